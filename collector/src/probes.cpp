#include "memhp/collector/probes.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/tp_probes.hpp"

// clang-format off
#include "memhp_event.h"
#include "hotplug.skel.h"
// clang-format on

namespace memhp::collector {

void HotplugProbes::SkelDeleter::operator()(hotplug* s) const { hotplug__destroy(s); }
void HotplugProbes::LinkDeleter::operator()(bpf_link* l) const { bpf_link__destroy(l); }
void HotplugProbes::RingDeleter::operator()(ring_buffer* r) const { ring_buffer__free(r); }

namespace {

// "fentry/add_memory_resource" -> {"fentry", "add_memory_resource"}
std::pair<std::string, std::string> split_section(const char* sec) {
    std::string s(sec);
    auto slash = s.find('/');
    if (slash == std::string::npos) return {s, ""};
    return {s.substr(0, slash), s.substr(slash + 1)};
}

// Programs without which memhp has nothing to say.
bool is_required(const std::string& prog) { return prog == "add_entry" || prog == "add_exit"; }

}  // namespace

HotplugProbes::HotplugProbes(Handler handler) : handler_(std::move(handler)) {
    check_bpf_prerequisites();

    // ---- memory_hotplug tracepoint path (kernel-patches/, tp_probes.cpp) ----
    // A kernel with memhp's trace events gets hotplug_tp.bpf.c instead of
    // this file's object: every phase is observed directly, nothing inferred.
    if (const char* forced = std::getenv("MEMHP_PROBES"); !forced || std::string(forced) != "fentry") {
        btf* kernel_btf = btf__load_vmlinux_btf();
        const bool has_tp = has_hotplug_tracepoints(kernel_btf);
        btf__free(kernel_btf);
        if (has_tp) {
            tp_ = std::make_unique<TracepointProbes>(report_);
            populate_direct_ = true;
            ring_.reset(ring_buffer__new(tp_->events_fd(), &HotplugProbes::on_record, this, nullptr));
            if (!ring_) throw BpfError(std::string("cannot set up the ring buffer: ") + std::strerror(errno));
            return;
        }
    }
    // ---- end of the tracepoint path ----
    skel_.reset(hotplug__open());
    if (!skel_) throw BpfError(std::string("cannot open the BPF object: ") + std::strerror(errno));

    // Switch off programs whose target this kernel does not have (BTF lookup),
    // before load: libbpf would fail the whole object otherwise.
    btf* vmlinux = btf__load_vmlinux_btf();
    if (!vmlinux) throw BpfError("cannot load the kernel's BTF (/sys/kernel/btf/vmlinux): " + std::string(std::strerror(errno)));
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel_->obj) {
        AttachStatus st;
        st.program = bpf_program__name(prog);
        std::tie(st.mode, st.target) = split_section(bpf_program__section_name(prog));
        st.required = is_required(st.program);
        bool present = true;
        if (st.mode == "tp_btf")
            present = btf__find_by_name_kind(vmlinux, ("btf_trace_" + st.target).c_str(), BTF_KIND_TYPEDEF) >= 0;
        else
            present = btf__find_by_name_kind(vmlinux, st.target.c_str(), BTF_KIND_FUNC) >= 0;
        if (!present) {
            bpf_program__set_autoload(prog, false);
            st.reason = "not in this kernel's BTF (renamed or inlined)";
        }
        report_.push_back(st);
    }
    btf__free(vmlinux);

    clear_libbpf_log();
    if (int err = hotplug__load(skel_.get()))
        throw BpfError("cannot load memhp's BPF programs: " + std::string(std::strerror(-err)) +
                       (err == -EPERM ? " (run as root, or with CAP_BPF and CAP_PERFMON)" : "") + "\nlibbpf said:\n" +
                       libbpf_log_tail(12));

    std::size_t i = 0;
    bpf_object__for_each_program(prog, skel_->obj) {
        auto& st = report_[i++];
        if (!st.reason.empty()) continue;
        bpf_link* link = bpf_program__attach(prog);
        if (!link) {
            int err = errno;
            st.reason = std::strerror(err);
            if (err == EINVAL || err == ENOENT || err == ESRCH || err == EBUSY)
                st.reason += " (the function is not traceable on this kernel, e.g. __meminit/notrace)";
            continue;
        }
        links_.emplace_back(link);
        st.attached = true;
        if (st.target == "vmemmap_populate" && st.mode == "fexit") populate_direct_ = true;
    }
    for (const auto& st : report_)
        if (st.required && !st.attached)
            throw BpfError("cannot attach " + st.mode + " " + st.target + ": " + st.reason +
                           ". memhp needs fentry/fexit (CONFIG_FUNCTION_TRACER, CONFIG_DEBUG_INFO_BTF) "
                           "on the memory hot-plug path (CONFIG_MEMORY_HOTPLUG).");
    skel_->bss->populate_direct = populate_direct_ ? 1 : 0;

    ring_.reset(ring_buffer__new(bpf_map__fd(skel_->maps.events), &HotplugProbes::on_record, this, nullptr));
    if (!ring_) throw BpfError(std::string("cannot set up the ring buffer: ") + std::strerror(errno));
}

HotplugProbes::~HotplugProbes() {
    ring_.reset();
    links_.clear();
    skel_.reset();
}

int HotplugProbes::on_record(void* ctx, void* data, std::size_t size) {
    auto* self = static_cast<HotplugProbes*>(ctx);
    self->handler_(std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(data), size));
    return 0;
}

int HotplugProbes::poll(int timeout_ms) { return ring_buffer__poll(ring_.get(), timeout_ms); }

std::uint64_t HotplugProbes::dropped_events() const {
    if (tp_) return tp_->dropped_events();  // tracepoint path
    return __atomic_load_n(&skel_->bss->dropped_events, __ATOMIC_RELAXED);
}

std::string HotplugProbes::path() const { return tp_ ? "memory_hotplug tracepoints" : "fentry/fexit"; }

std::string HotplugProbes::populate_timing() const {
    if (tp_) return "timed at the mhp_vmemmap_populate_begin/end events";
    return populate_direct_ ? "timed at vmemmap_populate" : "inferred from __add_pages";
}

std::string HotplugProbes::describe() const {
    std::string out = "  path: " + path() + "\n";  // which path is active (tracepoint path)
    for (const auto& st : report_) {
        out += "  " + st.mode + " " + st.target + ": " + (st.attached ? "attached" : "unavailable: " + st.reason) + "\n";
    }
    return out;
}

std::vector<std::pair<std::string, int>> HotplugProbes::program_fds() const {
    std::vector<std::pair<std::string, int>> out;
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel_->obj) {
        const std::string name = bpf_program__name(prog);
        for (const auto& st : report_)
            if (st.program == name && st.attached) out.emplace_back(name, bpf_program__fd(prog));
    }
    return out;
}

}  // namespace memhp::collector
