// SPDX-License-Identifier: Apache-2.0
// The probe-backend factory and what both BPF backends share: the ring
// buffer and the stale-op sweep.
#include "memhp/collector/probe_backend.hpp"

#include <bpf/libbpf.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <string_view>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/features.hpp"
#include "memhp/collector/probes.hpp"
#include "memhp/collector/tp_probes.hpp"

namespace memhp::collector {

ProbeOptions probe_options_from(const EnvLookup& env) {
    ProbeOptions o;
    if (const char* p = env("MEMHP_PROBES"); p && std::string(p) == "fentry") o.use_tracepoints = false;
    o.refuse_fentry = env("MEMHP_TEST_REFUSE_FENTRY") != nullptr;
    if (const char* n = env("MEMHP_TEST_MISS_ONLINE_EXITS")) {
        const std::string_view v(n);
        std::uint32_t count = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), count);
        if (ec != std::errc{} || end != v.data() + v.size() || count > 1000)
            throw Error("MEMHP_TEST_MISS_ONLINE_EXITS='" + std::string(v) + "': want a count from 0 to 1000");
        o.test_miss_online_exits = count;
    }
    return o;
}

std::size_t ProbeBackend::attached_count() const {
    std::size_t n = 0;
    for (const auto& st : attach_report()) n += st.attached;
    return n;
}

std::string ProbeBackend::describe() const {
    std::string out = "  path: " + path() + "\n";  // which path is active
    if (kernel_features().fentry_refused)
        out += "  note: the kernel refused BPF trampolines at the first fentry attach, so kprobes stand in\n";
    for (const auto& st : attach_report()) {
        out += "  " + (st.attached ? st.mode : st.kind) + " " + st.target + ": " +
               (st.attached ? "attached" : "unavailable: " + st.reason) + "\n";
    }
    return out;
}

std::unique_ptr<ProbeBackend> make_probe_backend(RecordHandler handler, const ProbeOptions& options) {
    const auto t0 = std::chrono::steady_clock::now();
    check_bpf_prerequisites();
    // Parsed once, for the choice and the function probes' feature probing.
    const auto kernel_btf = load_kernel_btf();
    std::vector<std::pair<std::string, double>> phases = {
        {"btf", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()}};
    // A kernel with memhp's trace events gets hotplug_tp.bpf.c: every phase
    // is observed directly, nothing inferred. use_tracepoints=false, or a
    // forced attach mode, keeps the function probes.
    if (options.use_tracepoints && options.mode == AttachMode::Auto && has_hotplug_tracepoints(kernel_btf.get()))
        return std::make_unique<TracepointProbes>(std::move(handler), options, std::move(phases));
    return std::make_unique<FunctionProbes>(std::move(handler), options, kernel_btf.get(), std::move(phases));
}

void RingProbeBackend::RingDeleter::operator()(ring_buffer* r) const { ring_buffer__free(r); }

RingProbeBackend::RingProbeBackend(RecordHandler handler, std::uint64_t stale_op_age_ns,
                                   std::vector<std::pair<std::string, double>> phases)
    : phases_(std::move(phases)), handler_(std::move(handler)), stale_op_age_ns_(stale_op_age_ns) {}

RingProbeBackend::~RingProbeBackend() = default;

void RingProbeBackend::open_ring(int events_fd) {
    ring_.reset(ring_buffer__new(events_fd, &RingProbeBackend::on_record, this, nullptr));
    if (!ring_) throw BpfError(std::string("cannot set up the ring buffer: ") + std::strerror(errno));
}

void RingProbeBackend::close_ring() { ring_.reset(); }

int RingProbeBackend::on_record(void* ctx, void* data, std::size_t size) {
    auto* self = static_cast<RingProbeBackend*>(ctx);
    self->handler_(std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(data), size));
    return 0;
}

int RingProbeBackend::poll(int timeout_ms) {
    const int n = ring_buffer__poll(ring_.get(), timeout_ms);
    const std::uint64_t now = monotonic_ns();
    if (now - last_sweep_ns_ >= 5000000000ull) {
        last_sweep_ns_ = now;
        const OpsState s = ops_state();
        const SweepCounts c = sweep_ops_map(s.ops_fd, s.outer_ops_fd, s.inflight, stale_op_age_ns_, task_exists);
        swept_task_gone_ += c.task_gone;
        swept_too_old_ += c.too_old;
    }
    return n;
}

OpHealth RingProbeBackend::op_health() const {
    OpHealth h = bpf_op_health();
    h.swept_task_gone = swept_task_gone_.load(std::memory_order_relaxed);
    h.swept_too_old = swept_too_old_.load(std::memory_order_relaxed);
    return h;
}

}  // namespace memhp::collector
