// SPDX-License-Identifier: Apache-2.0
#pragma once
// The tracepoint backend: hotplug_tp.bpf.c on the memory_hotplug trace
// events that kernel-patches/ adds. make_probe_backend() picks it instead of
// FunctionProbes when the running kernel has those events.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "memhp/collector/probe_backend.hpp"

struct hotplug_tp;  // the generated skeleton
struct bpf_link;

namespace memhp::collector {

class TracepointProbes : public RingProbeBackend {
public:
    // Opens, loads and attaches every program. Throws BpfError when loading
    // fails or an event cannot be attached: on a kernel that has them, all
    // must work. `phases`: what the factory timed before.
    TracepointProbes(RecordHandler handler, const ProbeOptions& options,
                     std::vector<std::pair<std::string, double>> phases);
    ~TracepointProbes() override;

    [[nodiscard]] std::uint64_t dropped_events() const override;
    [[nodiscard]] std::uint64_t interrupt_page_events() const override;
    // None: the exporter's run-time metrics cover the function probes only.
    [[nodiscard]] std::vector<std::pair<std::string, int>> program_fds() const override { return {}; }
    [[nodiscard]] std::string path() const override { return "memory_hotplug tracepoints"; }
    [[nodiscard]] std::string populate_timing() const override {
        return "timed at the mhp_vmemmap_populate_begin/end events";
    }
    // Nothing probed: the events are there or this backend is not chosen.
    [[nodiscard]] const KernelFeatures& kernel_features() const override { return features_; }
    [[nodiscard]] bool populate_direct() const override { return true; }

protected:
    [[nodiscard]] OpsState ops_state() const override;
    [[nodiscard]] OpHealth bpf_op_health() const override;

private:
    void load_and_attach();
    struct SkelDeleter {
        void operator()(hotplug_tp* s) const;
    };
    struct LinkDeleter {
        void operator()(bpf_link* l) const;
    };
    std::unique_ptr<hotplug_tp, SkelDeleter> skel_;
    std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links_;
    KernelFeatures features_;
};

}  // namespace memhp::collector
