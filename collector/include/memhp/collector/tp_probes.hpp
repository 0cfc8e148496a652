// SPDX-License-Identifier: Apache-2.0
#pragma once
// The tracepoint path: hotplug_tp.bpf.c on the memory_hotplug trace events
// that kernel-patches/ adds. HotplugProbes uses it instead of the
// fentry/fexit object when the running kernel has those events.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memhp/collector/op_health.hpp"
#include "memhp/collector/probes.hpp"

struct hotplug_tp;  // the generated skeleton
struct btf;

namespace memhp::collector {

// True when `vmlinux_btf` (the running kernel's) has the memory_hotplug
// trace events, i.e. the kernel was built with memhp's patches.
[[nodiscard]] bool has_hotplug_tracepoints(const btf* vmlinux_btf);

// The BTF type a tp_btf program on `event` attaches through.
[[nodiscard]] std::string btf_trace_type(const std::string& event);

class TracepointProbes {
public:
    // Opens, loads and attaches every program; fills `report`. Throws
    // BpfError when loading fails or an event cannot be attached: on a
    // kernel that has them, all must work.
    explicit TracepointProbes(std::vector<AttachStatus>& report);
    ~TracepointProbes();
    TracepointProbes(const TracepointProbes&) = delete;
    TracepointProbes& operator=(const TracepointProbes&) = delete;

    [[nodiscard]] int events_fd() const;
    [[nodiscard]] std::uint64_t dropped_events() const;
    [[nodiscard]] std::uint64_t interrupt_page_events() const;
    // The op state (hotplug_ops.bpf.h), for the stale-op sweep and op_health().
    [[nodiscard]] int ops_fd() const;
    [[nodiscard]] int outer_ops_fd() const;
    [[nodiscard]] volatile std::uint32_t* inflight() const;
    [[nodiscard]] OpHealth bpf_op_health() const;

private:
    struct SkelDeleter {
        void operator()(hotplug_tp* s) const;
    };
    struct LinkDeleter {
        void operator()(bpf_link* l) const;
    };
    std::unique_ptr<hotplug_tp, SkelDeleter> skel_;
    std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links_;
};

}  // namespace memhp::collector
