// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a collector session needs from its probes, whichever kernel side
// feeds them: FunctionProbes (probes.hpp: hotplug.bpf.c on fentry/fexit or
// kprobes) or TracepointProbes (tp_probes.hpp: hotplug_tp.bpf.c on the
// memory_hotplug trace events of kernel-patches/). make_probe_backend()
// picks one; tests hand a Session a fake.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "memhp/collector/attach_plan.hpp"
#include "memhp/collector/op_health.hpp"

struct ring_buffer;

namespace memhp::collector {

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
// MEMHP_TEST_MISS_ONLINE_EXITS). `env` looks a variable up (nullptr: unset):
// the programs' main functions pass std::getenv, so the library itself
// reads no environment. Throws Error on a bad count.
using EnvLookup = std::function<const char*(const char*)>;
[[nodiscard]] ProbeOptions probe_options_from(const EnvLookup& env);

// Hands each ring-buffer record to the session.
using RecordHandler = std::function<void(std::span<const std::uint8_t>)>;

class ProbeBackend {
public:
    virtual ~ProbeBackend() = default;
    ProbeBackend() = default;
    ProbeBackend(const ProbeBackend&) = delete;
    ProbeBackend& operator=(const ProbeBackend&) = delete;

    // Consumes ready records, waiting up to timeout_ms; returns how many, or
    // -errno (-EINTR on a signal is a normal return).
    virtual int poll(int timeout_ms) = 0;
    [[nodiscard]] virtual const std::vector<AttachStatus>& attach_report() const = 0;
    // Safe to call from another thread (the exporter's scrape) while poll() runs.
    [[nodiscard]] virtual OpHealth op_health() const = 0;
    [[nodiscard]] virtual std::uint64_t dropped_events() const = 0;
    // Page-allocator events an interrupt caused while an op was in flight on
    // its task: seen, and left out of the op.
    [[nodiscard]] virtual std::uint64_t interrupt_page_events() const = 0;
    // Attached programs as (name, fd): the exporter reads their run time.
    [[nodiscard]] virtual std::vector<std::pair<std::string, int>> program_fds() const = 0;
    // Which probe path is active: "memory_hotplug tracepoints",
    // "fentry/fexit", "kprobe/kretprobe" or both.
    [[nodiscard]] virtual std::string path() const = 0;
    // How vmemmap population is timed, for the attach message.
    [[nodiscard]] virtual std::string populate_timing() const = 0;
    // Where start-up time went, as (phase, ms): see FunctionProbes.
    [[nodiscard]] virtual const std::vector<std::pair<std::string, double>>& startup_phases() const = 0;
    // What feature probing found (empty on the tracepoint path, which needs none).
    [[nodiscard]] virtual const KernelFeatures& kernel_features() const = 0;
    // True when vmemmap population is timed at vmemmap_populate itself.
    [[nodiscard]] virtual bool populate_direct() const = 0;

    // One line per probe: "  fexit add_memory_resource: attached", after the path.
    // How many probes of attach_report() are attached.
    [[nodiscard]] std::size_t attached_count() const;
    [[nodiscard]] std::string describe() const;
};

using ProbeBackendFactory = std::function<std::unique_ptr<ProbeBackend>(RecordHandler, const ProbeOptions&)>;

// The backend this kernel and `options` call for: TracepointProbes on a
// kernel with memhp's memory_hotplug events (unless options say
// use_tracepoints=false or force an attach mode), else FunctionProbes.
// Throws BpfError (with a remedy) when the prerequisites are missing or a
// required program cannot attach.
[[nodiscard]] std::unique_ptr<ProbeBackend> make_probe_backend(RecordHandler handler, const ProbeOptions& options);

// What both BPF backends share: the ring buffer, the stale-op sweep that
// poll() runs every few seconds over the object's op state, the attach
// report and the start-up phases.
class RingProbeBackend : public ProbeBackend {
public:
    ~RingProbeBackend() override;
    int poll(int timeout_ms) override;
    [[nodiscard]] const std::vector<AttachStatus>& attach_report() const override { return report_; }
    [[nodiscard]] OpHealth op_health() const override;
    [[nodiscard]] const std::vector<std::pair<std::string, double>>& startup_phases() const override { return phases_; }

protected:
    // `phases`: what the factory timed before this backend was built.
    RingProbeBackend(RecordHandler handler, std::uint64_t stale_op_age_ns,
                     std::vector<std::pair<std::string, double>> phases);
    // The object's op state (hotplug_ops.bpf.h), for the sweep.
    struct OpsState {
        int ops_fd = -1;
        int outer_ops_fd = -1;
        volatile std::uint32_t* inflight = nullptr;
    };
    [[nodiscard]] virtual OpsState ops_state() const = 0;
    // The BPF side's counters; op_health() adds the sweep's.
    [[nodiscard]] virtual OpHealth bpf_op_health() const = 0;
    // Sets up the ring buffer on the object's `events` map.
    void open_ring(int events_fd);
    // Closes the ring buffer (before the object it reads goes away).
    void close_ring();

    std::vector<AttachStatus> report_;
    std::vector<std::pair<std::string, double>> phases_;

private:
    static int on_record(void* ctx, void* data, std::size_t size);
    struct RingDeleter {
        void operator()(ring_buffer* r) const;
    };
    RecordHandler handler_;
    std::unique_ptr<ring_buffer, RingDeleter> ring_;
    std::uint64_t stale_op_age_ns_ = 0;
    std::uint64_t last_sweep_ns_ = 0;
    std::atomic<std::uint64_t> swept_task_gone_{0};  // read by the exporter's scrape thread
    std::atomic<std::uint64_t> swept_too_old_{0};
};

}  // namespace memhp::collector
