// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/tp_probes.hpp"

#include <bpf/libbpf.h>
#include <linux/types.h>

#include <cerrno>
#include <cstring>

#include "memhp/collector/bpf_support.hpp"

// clang-format off
#include "memhp_event.h"
#include "hotplug_tp.skel.h"
// clang-format on

namespace memhp::collector {

void TracepointProbes::SkelDeleter::operator()(hotplug_tp* s) const { hotplug_tp__destroy(s); }
void TracepointProbes::LinkDeleter::operator()(bpf_link* l) const { bpf_link__destroy(l); }

TracepointProbes::TracepointProbes(RecordHandler handler, const ProbeOptions& options,
                                   std::vector<std::pair<std::string, double>> phases)
    : RingProbeBackend(std::move(handler), options.stale_op_age_ns, std::move(phases)) {
    load_and_attach();
    open_ring(bpf_map__fd(skel_->maps.events));
}

void TracepointProbes::load_and_attach() {
    skel_.reset(hotplug_tp__open());
    if (!skel_) throw BpfError(std::string("cannot open the tracepoint BPF object: ") + std::strerror(errno));
    clear_libbpf_log();
    if (int err = hotplug_tp__load(skel_.get()))
        throw BpfError("cannot load memhp's memory_hotplug tracepoint programs: " + std::string(std::strerror(-err)) +
                       (err == -EPERM ? " (run as root, or with CAP_BPF and CAP_PERFMON)" : "") + "\nlibbpf said:\n" +
                       libbpf_log_tail(12));
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel_->obj) {
        AttachStatus st;
        st.program = bpf_program__name(prog);
        st.mode = "tp_btf";
        std::string sec = bpf_program__section_name(prog);
        st.target = sec.substr(sec.find('/') + 1);
        st.required = true;
        bpf_link* link = bpf_program__attach(prog);
        if (!link) {
            const int err = errno;
            throw BpfError("cannot attach tp_btf " + st.target + ": " + std::strerror(err) +
                           ". The kernel has memhp's memory_hotplug events but refused a program on them; "
                           "check CONFIG_BPF_EVENTS and libbpf's messages:\n" +
                           libbpf_log_tail(6));
        }
        links_.emplace_back(link);
        st.attached = true;
        report_.push_back(st);
    }
}

TracepointProbes::~TracepointProbes() {
    close_ring();
    links_.clear();
    skel_.reset();
}

RingProbeBackend::OpsState TracepointProbes::ops_state() const {
    return {bpf_map__fd(skel_->maps.ops), bpf_map__fd(skel_->maps.outer_ops), &skel_->bss->inflight};
}

OpHealth TracepointProbes::bpf_op_health() const {
    OpHealth h;
    h.stale_missed_exit = __atomic_load_n(&skel_->bss->stale_ops, __ATOMIC_RELAXED);
    h.ops_map_full = __atomic_load_n(&skel_->bss->ops_map_full, __ATOMIC_RELAXED);
    h.nest_overflow = __atomic_load_n(&skel_->bss->nest_overflow, __ATOMIC_RELAXED);
    return h;
}

std::uint64_t TracepointProbes::dropped_events() const {
    return __atomic_load_n(&skel_->bss->dropped_events, __ATOMIC_RELAXED);
}
std::uint64_t TracepointProbes::interrupt_page_events() const {
    return __atomic_load_n(&skel_->bss->interrupt_page_events, __ATOMIC_RELAXED);
}

}  // namespace memhp::collector
