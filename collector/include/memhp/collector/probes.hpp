// SPDX-License-Identifier: Apache-2.0
#pragma once
// Loads hotplug.bpf.c, attaches what this kernel allows, and hands ring-buffer
// records to a callback. Each probe has a BTF-based program (fentry/fexit,
// tp_btf) and a classic twin (kprobe/kretprobe, raw_tp); which one runs is
// decided from user-space feature probing (attach_plan.hpp). Probes that can
// attach neither way are reported and skipped: running degraded beats
// refusing to run.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "memhp/collector/attach_plan.hpp"
#include "memhp/collector/op_health.hpp"

struct hotplug;  // the generated skeleton
struct bpf_link;
struct ring_buffer;

namespace memhp::collector {

class TracepointProbes;  // tp_probes.hpp

struct AttachStatus {
    std::string program;  // the BPF program doing the probe's work
    std::string target;   // kernel function or tracepoint
    std::string mode;     // "fentry", "fexit", "kprobe", "kretprobe", "tp_btf", "raw_tp"; "none" when unavailable
    bool attached = false;
    bool required = false;
    std::string reason;  // why not, when not attached
    std::string kind;    // "entry", "exit", "tracepoint"
};

struct ProbeOptions {
    AttachMode mode = AttachMode::Auto;  // force one family (memhp trace --attach-mode)
    // On a kernel with kernel-patches/' memory_hotplug events, use them
    // (false keeps the function probes: MEMHP_PROBES=fentry).
    bool use_tracepoints = true;
    // Tests only: act as if the kernel refused the first fentry attach
    // (MEMHP_TEST_REFUSE_FENTRY), to exercise the start over on kprobes.
    bool refuse_fentry = false;
    // Tests only: ignore the next this-many online exits, as if their
    // kretprobe had been missed (MEMHP_TEST_MISS_ONLINE_EXITS), so the stale
    // op they leave is found at the task's next begin (function probes only).
    std::uint32_t test_miss_online_exits = 0;
    // An op in flight longer than this is aged out by poll()'s sweep (0: only
    // ops of tasks that are gone). Adds of a block take milliseconds; the
    // largest single adds seen in the lab take tens of seconds.
    std::uint64_t stale_op_age_ns = 600ull * 1000000000ull;
};

// The options the environment asks for (MEMHP_PROBES, MEMHP_TEST_REFUSE_FENTRY,
// MEMHP_TEST_MISS_ONLINE_EXITS),
// read once by the programs' main functions and passed down explicitly.
[[nodiscard]] ProbeOptions probe_options_from_environment();

// The probes HotplugProbes attaches, in attach-report order.
[[nodiscard]] std::vector<ProbeSpec> hotplug_probe_specs();
// Disagreements between that table and the programs in the BPF object (empty
// when every program belongs to exactly one probe and family). Needs no
// privileges: it only opens the object.
[[nodiscard]] std::vector<std::string> probe_table_mismatches();

struct KallsymsInfo;

class HotplugProbes {
public:
    using Handler = std::function<void(std::span<const std::uint8_t>)>;
    // Throws BpfError (with a remedy) when the prerequisites are missing or a
    // required program (the add path) cannot attach.
    explicit HotplugProbes(Handler handler, ProbeOptions options = {});
    ~HotplugProbes();
    HotplugProbes(const HotplugProbes&) = delete;
    HotplugProbes& operator=(const HotplugProbes&) = delete;

    [[nodiscard]] const std::vector<AttachStatus>& attach_report() const { return report_; }
    [[nodiscard]] const KernelFeatures& kernel_features() const { return features_; }
    // True when vmemmap population is timed at vmemmap_populate itself.
    [[nodiscard]] bool populate_direct() const { return populate_direct_; }
    // Consumes ready records, waiting up to timeout_ms; returns how many, or
    // -errno (-EINTR on a signal is a normal return). Every few seconds it
    // also sweeps stale ops out of the BPF state (op_health()).
    int poll(int timeout_ms);
    [[nodiscard]] OpHealth op_health() const;
    [[nodiscard]] std::uint64_t dropped_events() const;
    // Page-allocator events an interrupt caused while an op was in flight on
    // its task: seen, and left out of the op.
    [[nodiscard]] std::uint64_t interrupt_page_events() const;
    // Where start-up time went: ("btf", ms), ("features", ms), ("load", ms;
    // /proc/kallsyms is read beside both), ("kallsyms", ms: what was left of
    // it), ("attach", ms). A start over on kprobes repeats the last three.
    [[nodiscard]] const std::vector<std::pair<std::string, double>>& startup_phases() const { return phases_; }
    // One line per probe: "  fexit add_memory_resource: attached".
    [[nodiscard]] std::string describe() const;
    // Attached programs as (name, fd): the exporter reads their run time.
    [[nodiscard]] std::vector<std::pair<std::string, int>> program_fds() const;
    // Which probe path is active: "memory_hotplug tracepoints" when the
    // kernel has kernel-patches/' events (ProbeOptions::use_tracepoints=false
    // forces the fentry path), else "fentry/fexit".
    [[nodiscard]] std::string path() const;
    // How vmemmap population is timed, for the attach message.
    [[nodiscard]] std::string populate_timing() const;

private:
    static int on_record(void* ctx, void* data, std::size_t size);
    // The constructor's steps on the function-probe path.
    void load(const std::vector<ProbeChoice>& plan);
    void set_kernel_addresses(const KallsymsInfo& syms);
    // False when the first fentry/fexit attach shows the kernel refuses BPF
    // trampolines altogether (the caller starts over on kprobes).
    bool attach(const std::vector<ProbeChoice>& plan, bool refuse_fentry);
    struct SkelDeleter {
        void operator()(hotplug* s) const;
    };
    struct LinkDeleter {
        void operator()(bpf_link* l) const;
    };
    struct RingDeleter {
        void operator()(ring_buffer* r) const;
    };
    Handler handler_;
    std::unique_ptr<hotplug, SkelDeleter> skel_;
    std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links_;
    std::unique_ptr<ring_buffer, RingDeleter> ring_;
    std::vector<AttachStatus> report_;
    KernelFeatures features_;
    std::vector<std::pair<std::string, double>> phases_;
    std::set<std::string> attached_programs_;  // every program of an attached probe
    bool populate_direct_ = false;
    std::uint64_t stale_op_age_ns_ = 0;
    std::uint64_t last_sweep_ns_ = 0;
    std::atomic<std::uint64_t> swept_task_gone_{0};  // read by the exporter's scrape thread
    std::atomic<std::uint64_t> swept_too_old_{0};
    std::unique_ptr<TracepointProbes> tp_;  // set when the tracepoint path is active
};

}  // namespace memhp::collector
