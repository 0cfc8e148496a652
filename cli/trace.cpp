// SPDX-License-Identifier: Apache-2.0
// memhp trace: live, one line per hot-plug operation (or NDJSON with --json),
// and a summary table on Ctrl-C.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>

#include "commands.hpp"
#include "memhp/collector/aggregator.hpp"
#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/privileges.hpp"
#include "memhp/collector/session.hpp"
#include "memhp/files.hpp"
#include "memhp/size.hpp"
#include "memhp/stop.hpp"

namespace memhp::cli {
namespace {

using collector::Operation;
using collector::Phase;

std::string duration_text(std::uint64_t ns) {
    char buf[32];
    if (ns >= 1'000'000'000)
        std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(ns) / 1e9);
    else if (ns >= 1'000'000)
        std::snprintf(buf, sizeof buf, "%.3f ms", static_cast<double>(ns) / 1e6);
    else
        std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
    return buf;
}

class LinePrinter : public collector::OperationSink {
public:
    explicit LinePrinter(bool json) : json_(json) {
        if (!json_)
            std::printf("%-8s %-9s %4s %12s %8s %11s %5s  %s\n", "TIME", "PHASE", "NID", "START_PFN", "PAGES",
                        "DURATION", "RET", "DETAILS");
        std::fflush(stdout);
    }
    void on_operation(const Operation& op) override {
        if (json_) {
            std::printf("%s\n", collector::to_json(op).dump().c_str());
            std::fflush(stdout);
            return;
        }
        char when[16];
        std::time_t now = std::time(nullptr);
        std::strftime(when, sizeof when, "%H:%M:%S", std::localtime(&now));
        std::string details;
        const auto& m = op.memmap;
        switch (op.phase) {
            case Phase::Add:
            case Phase::Remove:
                details = std::string(op.phase == Phase::Add ? "memmap taken" : "memmap freed") + ": altmap " +
                          std::to_string(m.altmap_pages) + ", page allocator " + std::to_string(m.buddy_pages) +
                          ", page tables " + std::to_string(m.pagetable_pages) + "; local " +
                          std::to_string(m.local_pages) + ", remote " + std::to_string(m.remote_pages);
                if (op.phase == Phase::Add) {
                    details += "; free memory used " + format_size_human(op.free_bytes_consumed);
                    if (op.memmap_on_memory_unused) details += "; MEMMAP_ON_MEMORY UNUSED: " + op.unused_reason;
                }
                break;
            case Phase::Populate:
                details = std::string(op.mode == collector::MemmapMode::Altmap ? "altmap" : "page allocator") +
                          (op.populate_direct ? ", at vmemmap_populate" : ", inferred from __add_pages");
                break;
            case Phase::Online:
            case Phase::Offline:
                details = "zone " + (op.zone.empty() ? std::string("?") : op.zone) + ", vmemmap pages " +
                          std::to_string(op.vmemmap_pages);
                break;
        }
        if (op.parent_op_id)
            details += "; nested in " + std::string(op.parent_phase ? collector::phase_name(*op.parent_phase) : "op") +
                       " #" + std::to_string(op.parent_op_id);
        if (op.nested_ops)
            details += "; own time (" + std::to_string(op.nested_ops) + " nested took " + duration_text(op.nested_ns) +
                       ", inclusive " + duration_text(op.inclusive_ns) + ")";
        std::printf("%-8s %-9s %4d %#12" PRIx64 " %8" PRIu64 " %11s %5d  %s\n", when, collector::phase_name(op.phase),
                    op.nid, op.start_pfn, op.nr_pages, duration_text(op.duration_ns).c_str(), op.ret, details.c_str());
        std::fflush(stdout);
    }

private:
    bool json_;
};

void print_summary(const collector::Stats& s, const collector::TraceLosses& lost, std::uint64_t interrupt_pages,
                   const collector::OpHealth& health) {
    std::fprintf(stderr, "\n%-9s %6s %6s %12s\n", "PHASE", "COUNT", "FAILED", "MEAN");
    for (auto phase : collector::kAllPhases) {
        std::uint64_t count = 0, sum = 0, failed = 0;
        for (const auto& [key, h] : s.latency)
            if (std::get<0>(key) == phase) {
                count += h.count();
                sum += h.sum_ns();
            }
        for (const auto& [key, n] : s.failures)
            if (std::get<0>(key) == phase) failed += n;
        if (!count) continue;
        std::fprintf(stderr, "%-9s %6" PRIu64 " %6" PRIu64 " %12s\n", collector::phase_name(phase), count, failed,
                     duration_text(sum / count).c_str());
    }
    std::fprintf(stderr, "\n%-15s %6s %6s %10s\n", "MEMMAP SOURCE", "SERVES", "ON", "PAGES");
    for (const auto& [key, pages] : s.memmap_pages)
        std::fprintf(stderr, "%-15s %6d %6d %10" PRIu64 "\n", collector::source_name(std::get<0>(key)),
                     std::get<1>(key), std::get<2>(key), pages);
    for (const auto& [errno_key, n] : s.failures)
        std::fprintf(stderr, "failures: %s errno %d (%s): %" PRIu64 "\n", collector::phase_name(std::get<0>(errno_key)),
                     std::get<1>(errno_key), std::strerror(std::get<1>(errno_key)), n);
    std::int64_t present = 0, memmap = 0;
    for (const auto& [node, bytes] : s.present_bytes) present += bytes;
    for (const auto& [key, bytes] : s.memmap_bytes) memmap += bytes;
    std::fprintf(stderr, "live: hot-plugged %s, memmap %s\n",
                 format_size_human(static_cast<std::uint64_t>(std::max<std::int64_t>(present, 0))).c_str(),
                 format_size_human(static_cast<std::uint64_t>(std::max<std::int64_t>(memmap, 0))).c_str());
    std::fprintf(stderr,
                 "events %" PRIu64 ", dropped %" PRIu64 ", decode errors %" PRIu64
                 ", orphan page events (their op never completed) %" PRIu64
                 ", memmap_on_memory requested but unused %" PRIu64
                 ", page events from interrupts (not billed to an op) %" PRIu64 "\n",
                 s.events, lost.dropped_events, s.decode_errors, s.orphan_page_events, s.memmap_on_memory_unused,
                 interrupt_pages);
    if (s.kernel_memmap_pages)
        std::fprintf(stderr,
                     "kernel memmap: nr_memmap_pages %" PRId64 " after the last add/remove; %" PRIu64
                     " successful add(s)/remove(s) where its change differed from memhp's count%s\n",
                     *s.kernel_memmap_pages, s.kernel_memmap_mismatches,
                     s.kernel_memmap_mismatches ? " (see kernel_memmap_pages in --json)" : "");
    if (s.memmap_event_disagreements)
        std::fprintf(stderr,
                     "memmap events: %" PRIu64
                     " add(s) where the kernel's mhp_memmap_alloc sums and the page events disagree (see "
                     "memmap_events in --json)\n",
                     s.memmap_event_disagreements);
    for (const auto& [key, n] : s.nested)
        std::fprintf(stderr, "nested: %" PRIu64 " %s inside %s\n", n, collector::phase_name(std::get<0>(key)),
                     collector::phase_name(std::get<1>(key)));
    const std::uint64_t stale = health.stale_missed_exit + health.swept_task_gone + health.swept_too_old;
    if (stale || health.ops_map_full || health.nest_overflow)
        std::fprintf(stderr,
                     "op state: %" PRIu64 " stale ops aged out (missed exit %" PRIu64 ", task gone %" PRIu64
                     ", too old %" PRIu64 "), %" PRIu64 " not traced (map full %" PRIu64 ", nested too deep %" PRIu64
                     ")\n",
                     stale, health.stale_missed_exit, health.swept_task_gone, health.swept_too_old,
                     health.ops_map_full + health.nest_overflow, health.ops_map_full, health.nest_overflow);
    if (lost.any())
        std::fprintf(stderr,
                     "LOST EVENTS: this trace is incomplete (dropped %" PRIu64 ", decode errors %" PRIu64
                     ", orphan page events %" PRIu64 ", stale ops %" PRIu64 ", untraced ops %" PRIu64
                     "); records may be missing or short of pages\n",
                     lost.dropped_events, lost.decode_errors, lost.orphan_page_events, lost.stale_ops,
                     lost.untraced_ops);
}

struct TraceOpts {
    bool json = false;
    double duration = 0;
    bool verbose = false;
    bool keep_capabilities = false;
    std::string attach_mode = "auto";
};

void print_attached(const collector::Session& session, const TraceOpts& o, const std::string& privileges) {
    const auto& probes = session.backend();
    std::fprintf(stderr,
                 "memhp: attached %zu of %zu probes in %.0f ms (attach mode %s); vmemmap populate %s; "
                 "memmap_on_memory=%s; capabilities %s\n%s",
                 probes.attached_count(), probes.attach_report().size(), session.attach_ms(), o.attach_mode.c_str(),
                 probes.populate_timing().c_str(), session.config().memmap_on_memory.value_or("absent").c_str(),
                 privileges.c_str(), probes.describe().c_str());
    std::string phases;
    for (const auto& [phase, ms] : probes.startup_phases())
        phases += (phases.empty() ? "" : ", ") + phase + " " + std::to_string(std::lround(ms)) + " ms";
    if (!phases.empty()) std::fprintf(stderr, "  start-up: %s\n", phases.c_str());
    std::fflush(stderr);
}

int run_trace(const TraceOpts& o) {
    collector::install_libbpf_logging(o.verbose);
    collector::SessionOptions sopts;
    sopts.probes = collector::probe_options_from([](const char* name) { return std::getenv(name); });
    sopts.probes.mode = collector::parse_attach_mode(o.attach_mode);
    const auto t_start = std::chrono::steady_clock::now();
    collector::Session session(std::move(sopts));
    LinePrinter printer(o.json);  // the header, then records
    session.add_sink(&printer);
    // Attached: reading the ring buffer needs no capability (privileges.hpp).
    print_attached(session, o, collector::drop_capabilities_after_attach(o.keep_capabilities));

    collector::RunOptions run;
    run.stop = [&o, t_start] {
        return stop_requested() ||
               (o.duration > 0 &&
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() >= o.duration);
    };
    if (const int r = session.run(run); r < 0)
        throw collector::BpfError(std::string("ring buffer poll failed: ") + std::strerror(-r));
    const auto& probes = session.backend();
    const auto stats = session.stats();
    const auto health = probes.op_health();
    const auto lost = collector::trace_losses(stats, probes.dropped_events(), health);
    if (o.json) {  // the last record: what the trace lost (docs/trace-json.md)
        std::printf("%s\n",
                    collector::summary_to_json(stats, lost, health, probes.interrupt_page_events()).dump().c_str());
        std::fflush(stdout);
    }
    print_summary(stats, lost, probes.interrupt_page_events(), health);
    return 0;
}

}  // namespace

Command add_trace_command(CLI::App& app) {
    auto o = std::make_shared<TraceOpts>();
    auto* cmd = app.add_subcommand(
        "trace",
        "Trace memory hot(un)plug live: one line per add, vmemmap populate, online, offline and remove, with where "
        "the memmap came from (altmap or page allocator), its NUMA locality, the free memory it cost and each "
        "phase's duration. Ctrl-C prints a summary. Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF.");
    cmd->add_flag(
        "--json", o->json,
        "write one JSON object per completed operation to stdout (NDJSON; schema in docs/trace-json.md), and at "
        "the end one summary record with the events the trace lost (dropped, orphaned, aged out)");
    cmd->add_option("--duration", o->duration, "stop after this many seconds (0: until Ctrl-C or SIGTERM)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--attach-mode", o->attach_mode,
                    "how probes attach: auto (fentry/fexit and tp_btf where the kernel allows, else "
                    "kprobe/kretprobe and raw_tp), fentry (BTF trampolines only) or kprobe (kprobes and raw "
                    "tracepoints only, e.g. to compare with fentry)")
        ->check(CLI::IsMember({"auto", "fentry", "kprobe"}))
        ->default_str("auto");
    cmd->add_flag("-v,--verbose", o->verbose, "print libbpf's debug messages");
    cmd->add_flag("--keep-capabilities", o->keep_capabilities,
                  "debugging only: keep the process's capabilities after the probes are attached (by default "
                  "every capability is dropped once they are)");
    return {cmd, [o] { return run_trace(*o); }};
}

}  // namespace memhp::cli
