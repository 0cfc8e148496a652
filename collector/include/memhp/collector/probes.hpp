// SPDX-License-Identifier: Apache-2.0
#pragma once
// The function-probe backend: loads hotplug.bpf.c, attaches what this kernel
// allows, and hands ring-buffer records to a callback. Each probe has a
// BTF-based program (fentry/fexit, tp_btf) and a classic twin
// (kprobe/kretprobe, raw_tp); which one runs is decided from user-space
// feature probing (features.hpp, attach_plan.hpp). Probes that can attach
// neither way are reported and skipped: running degraded beats refusing to run.
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "memhp/collector/attach_plan.hpp"
#include "memhp/collector/probe_backend.hpp"

struct hotplug;  // the generated skeleton
struct bpf_link;
struct btf;

namespace memhp::collector {

// The probes FunctionProbes attaches, in attach-report order.
[[nodiscard]] std::vector<ProbeSpec> hotplug_probe_specs();
// Disagreements between that table and the programs in the BPF object (empty
// when every program belongs to exactly one probe and family). Needs no
// privileges: it only opens the object.
[[nodiscard]] std::vector<std::string> probe_table_mismatches();

struct KallsymsInfo;

class FunctionProbes : public RingProbeBackend {
public:
    // `kernel_btf`: the running kernel's, parsed by the factory
    // (make_probe_backend). Throws BpfError (with a remedy) when a required
    // program (the add path) cannot attach.
    FunctionProbes(RecordHandler handler, const ProbeOptions& options, const btf* kernel_btf,
                   std::vector<std::pair<std::string, double>> phases);
    ~FunctionProbes() override;

    [[nodiscard]] const KernelFeatures& kernel_features() const override { return features_; }
    [[nodiscard]] bool populate_direct() const override { return populate_direct_; }
    [[nodiscard]] std::uint64_t dropped_events() const override;
    [[nodiscard]] std::uint64_t interrupt_page_events() const override;
    // Start-up phases: ("btf", ms), ("features", ms), ("load", ms;
    // /proc/kallsyms is read beside both), ("kallsyms", ms: what was left of
    // it), ("attach", ms). A start over on kprobes repeats the last three.
    [[nodiscard]] std::vector<std::pair<std::string, int>> program_fds() const override;
    // "fentry/fexit", "kprobe/kretprobe", or both.
    [[nodiscard]] std::string path() const override;
    [[nodiscard]] std::string populate_timing() const override;

protected:
    [[nodiscard]] OpsState ops_state() const override;
    [[nodiscard]] OpHealth bpf_op_health() const override;

private:
    // The constructor's steps.
    void load_and_attach(const ProbeOptions& options, const btf* kernel_btf);
    void load(const std::vector<ProbeChoice>& plan);
    void set_kernel_addresses(const KallsymsInfo& syms);
    // False when the first fentry/fexit attach shows the kernel refuses BPF
    // trampolines altogether (the caller starts over on kprobes).
    bool attach(const std::vector<ProbeChoice>& plan, bool refuse_fentry);
    void check_required() const;
    struct SkelDeleter {
        void operator()(hotplug* s) const;
    };
    struct LinkDeleter {
        void operator()(bpf_link* l) const;
    };
    std::unique_ptr<hotplug, SkelDeleter> skel_;
    std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links_;
    KernelFeatures features_;
    std::set<std::string> attached_programs_;  // every program of an attached probe
    bool populate_direct_ = false;
};

}  // namespace memhp::collector
