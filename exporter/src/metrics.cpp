// SPDX-License-Identifier: Apache-2.0
#include "memhp/exporter/metrics.hpp"

#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "memhp/collector/host_config.hpp"
#include "memhp/files.hpp"
#include "memhp/version.hpp"

namespace memhp::exporter {

namespace fs = std::filesystem;
using collector::Log2Histogram;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// ---- catalog -----------------------------------------------------------------

namespace {

std::vector<MetricDef> probe_metric_defs() {
    return {
        // From the probes, aggregated by the collector since the exporter started.
        // No node label: 64 nodes x 5 phases x 2 modes x 29 buckets would be
        // 18k series per host and a /metrics render far above 2 ms.
        {"memhp_operation_duration_seconds",
         MetricKind::Histogram,
         {"phase", "memmap_mode"},
         "Time each memory hot(un)plug operation took in the kernel, failed ones included, over all nodes. phase: "
         "add, populate (vmemmap population inside an add), online, offline, remove. memmap_mode: altmap (memmap on "
         "the hot-added memory) or page_allocator.",
         "probes"},
        {"memhp_nested_operations_total",
         MetricKind::Counter,
         {"phase", "parent_phase"},
         "Operations that ran inside another on the same task, e.g. an online inside its add when the kernel "
         "auto-onlines (auto_online_blocks=online*). Their time is their own: the parent's duration histogram "
         "excludes it.",
         "probes"},
        {"memhp_operation_failures_total",
         MetricKind::Counter,
         {"phase", "errno"},
         "Hot-plug operations that returned an error, by phase and errno name (EBUSY, ENOMEM, ...).",
         "probes"},
        {"memhp_memmap_allocated_bytes_total",
         MetricKind::Counter,
         {"source", "node", "memmap_node", "locality"},
         "Memmap bytes hot-adds took. source: altmap (carved from the added memory), page_allocator (PMD-sized "
         "struct page blocks from memory already online), page_tables (order-0 pages, mostly vmemmap page "
         "tables). node: where the memory was added; memmap_node: where its memmap sits; locality: local, remote "
         "or unknown.",
         "probes"},
        {"memhp_add_free_memory_consumed_bytes_total",
         MetricKind::Counter,
         {"node"},
         "Page-allocator memory (already online) that hot-adds used up before the new memory was online, by the "
         "node the memory was added to.",
         "probes"},
        {"memhp_memmap_on_memory_unused_total",
         MetricKind::Counter,
         {},
         "Successful hot-adds that took their memmap from the page allocator although memmap_on_memory is "
         "enabled (memhp trace prints the reason for each).",
         "probes"},
        {"memhp_hotplugged_memory_bytes",
         MetricKind::Gauge,
         {"node"},
         "Hot-added memory present now (added and not yet removed while the exporter ran), by node.",
         "probes"},
        {"memhp_hotplugged_memmap_bytes",
         MetricKind::Gauge,
         {"source", "memmap_node"},
         "Memmap of the hot-added memory present now, by source and the node where it sits.",
         "probes"},
        {"memhp_kernel_memmap_bytes",
         MetricKind::Gauge,
         {},
         "The kernel's own count of memmap memory, /proc/vmstat nr_memmap_pages x 4 KiB (Linux 6.11+; altmap and "
         "page-allocator memmap alike), read by the probes at the end of the last hot-add or remove. Absent on "
         "older kernels and before the first operation. node_exporter's default vmstat filter drops this counter.",
         "probes"},
        {"memhp_kernel_memmap_mismatches_total",
         MetricKind::Counter,
         {},
         "Successful hot-adds and removes whose change of nr_memmap_pages differed from memhp's own memmap count "
         "(altmap + page-allocator pages): another operation ran alongside, or memhp missed pages.",
         "probes"},
    };
}

std::vector<MetricDef> host_metric_defs() {
    return {
        // Host state, read from sysfs at scrape time.
        {"memhp_memory_blocks",
         MetricKind::Gauge,
         {"node", "state", "zone"},
         "Memory blocks in /sys/devices/system/memory by node, state (online, offline, going-offline) and zone "
         "(the zone of an online block; none when offline).",
         "sysfs"},
        {"memhp_memory_block_size_bytes",
         MetricKind::Gauge,
         {},
         "Size of one memory block (/sys/devices/system/memory/block_size_bytes).",
         "sysfs"},
        {"memhp_memmap_on_memory_enabled",
         MetricKind::Gauge,
         {},
         "1 when the kernel parameter memory_hotplug.memmap_on_memory is Y or force, else 0.",
         "sysfs"},
        {"memhp_memory_auto_online_info",
         MetricKind::Gauge,
         {"policy"},
         "The auto-online policy for hot-added memory (/sys/devices/system/memory/auto_online_blocks). Always 1.",
         "sysfs"},
    };
}

std::vector<MetricDef> exporter_metric_defs() {
    return {
        // About the exporter itself.
        {"memhp_build_info", MetricKind::Gauge, {"version"}, "memhp-exporter's version. Always 1.", "exporter"},
        {"memhp_probe_attached",
         MetricKind::Gauge,
         {"program", "target", "attach_mode"},
         "1 when the BPF program is attached to its kernel target, 0 when this kernel cannot offer the target. "
         "attach_mode: fentry, fexit, tp_btf, kprobe, ...",
         "exporter"},
        {"memhp_events_total", MetricKind::Counter, {}, "Ring-buffer records the exporter consumed.", "exporter"},
        {"memhp_event_decode_errors_total",
         MetricKind::Counter,
         {},
         "Ring-buffer records of the wrong size or type (a BPF object and exporter from different builds).",
         "exporter"},
        {"memhp_ring_buffer_dropped_events_total",
         MetricKind::Counter,
         {},
         "Events the BPF side could not send because the ring buffer was full: figures undercount when this grows.",
         "exporter"},
        {"memhp_interrupt_page_events_total",
         MetricKind::Counter,
         {},
         "Page-allocator events of interrupts (e.g. network receive) that arrived while a hot-plug operation ran on "
         "the interrupted task: seen and left out of the operation's figures.",
         "exporter"},
        {"memhp_stale_operations_total",
         MetricKind::Counter,
         {"reason"},
         "Operations whose end never came, aged out of the BPF state. reason: missed_exit (the task began "
         "another at the same stack depth), task_gone (its task exited), too_old (in flight past the age limit).",
         "exporter"},
        {"memhp_untraced_operations_total",
         MetricKind::Counter,
         {"reason"},
         "Operations BPF could not track. reason: ops_map_full (more tasks in hot-plug at once than the map "
         "holds), nested_too_deep (a third level of nesting).",
         "exporter"},
        {"memhp_orphan_page_events_total",
         MetricKind::Counter,
         {},
         "Page-allocator events whose operation never completed (dropped from the bounded buffer).",
         "exporter"},
        {"memhp_bpf_stats_enabled",
         MetricKind::Gauge,
         {},
         "1 when kernel.bpf_stats_enabled is on, so the BPF run-time metrics below are served.",
         "sysfs"},
        {"memhp_bpf_program_run_seconds_total",
         MetricKind::Counter,
         {"program"},
         "CPU time the kernel spent in each memhp BPF program (only while kernel.bpf_stats_enabled=1).",
         "exporter"},
        {"memhp_bpf_program_runs_total",
         MetricKind::Counter,
         {"program"},
         "Times each memhp BPF program ran (only while kernel.bpf_stats_enabled=1).",
         "exporter"},
    };
}

}  // namespace

// In the order the families are served and documented.
const std::vector<MetricDef>& metric_catalog() {
    static const std::vector<MetricDef> catalog = [] {
        std::vector<MetricDef> all;
        for (const auto& part : {probe_metric_defs(), host_metric_defs(), exporter_metric_defs()})
            all.insert(all.end(), part.begin(), part.end());
        return all;
    }();
    return catalog;
}

const MetricDef& metric_def(const std::string& name) {
    for (const auto& d : metric_catalog())
        if (d.name == name) return d;
    throw std::out_of_range("no metric " + name + " in the catalog");
}

namespace {
const char* kind_name(MetricKind k) {
    switch (k) {
        case MetricKind::Counter: return "counter";
        case MetricKind::Gauge: return "gauge";
        case MetricKind::Histogram: return "histogram";
    }
    return "untyped";
}
}  // namespace

std::string metrics_markdown() {
    std::string md =
        "# memhp-exporter metrics\n\n"
        "Generated by `memhp-exporter --list-metrics` from the exporter's metric catalog\n"
        "(`exporter/src/metrics.cpp`); a unit test fails when this file is stale. Regenerate with\n"
        "`build/bin/memhp-exporter --list-metrics > docs/metrics.md`.\n\n"
        "Source: `probes` = aggregated from memhp's BPF probes since the exporter started; `sysfs` = read\n"
        "from sysfs/procfs at scrape time; `exporter` = about the exporter itself. Node labels are NUMA node\n"
        "numbers (`unknown` when the kernel did not say). Histogram buckets are powers of two in nanoseconds\n"
        "(`le` from 2^" +
        std::to_string(kFirstBucketLog2) + " ns to 2^" + std::to_string(kLastBucketLog2) +
        " ns, then `+Inf`), the collector's log2 buckets.\n\n"
        "| metric | type | labels | source | description |\n|---|---|---|---|---|\n";
    for (const auto& d : metric_catalog()) {
        std::string labels;
        for (const auto& l : d.labels) labels += (labels.empty() ? "`" : ", `") + l + "`";
        md += "| `" + d.name + "` | " + kind_name(d.kind) + " | " + (labels.empty() ? "-" : labels) + " | " + d.source +
              " | " + d.help + " |\n";
    }
    return md;
}

std::string errno_name(int err) {
    if (const char* n = ::strerrorname_np(err)) return n;
    return std::to_string(err);
}

// ---- host state --------------------------------------------------------------

namespace {

std::int64_t numbered(std::string_view name, std::string_view prefix) {
    if (!name.starts_with(prefix) || name.size() == prefix.size() || name.size() - prefix.size() > 9) return -1;
    std::int64_t v = 0;
    for (char c : name.substr(prefix.size())) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
        v = v * 10 + (c - '0');
    }
    return v;
}

std::optional<std::string> read_word(const fs::path& p) {
    auto t = try_read_file(p);
    if (!t) return std::nullopt;
    auto w = trim(*t);
    if (auto sp = w.find_first_of(" \t\n"); sp != std::string::npos) w.resize(sp);
    return w;
}

}  // namespace

HostState SysfsHostSource::read() {
    HostState h;
    const fs::path mem = root_ / "sys/devices/system/memory";
    if (auto t = read_word(mem / "block_size_bytes")) {
        std::uint64_t v = 0;
        bool ok = !t->empty() && t->size() <= 16;
        for (char c : *t) ok = ok && std::isxdigit(static_cast<unsigned char>(c));
        if (ok) v = std::stoull(*t, nullptr, 16);
        if (v) h.block_size_bytes = v;
    }
    std::error_code ec;
    for (fs::directory_iterator it(mem, ec), end; !ec && it != end; it.increment(ec)) {
        if (numbered(it->path().filename().native(), "memory") < 0) continue;
        auto state = read_word(it->path() / "state");
        if (!state) continue;  // the block went away under us
        int node = -1;
        std::error_code sub_ec;
        for (fs::directory_iterator sub(it->path(), sub_ec), sub_end; !sub_ec && sub != sub_end; sub.increment(sub_ec))
            if (auto n = numbered(sub->path().filename().native(), "node"); n >= 0) {
                node = static_cast<int>(n);
                break;
            }
        std::string zone = "none";
        if (*state == "online")
            if (auto z = read_word(it->path() / "valid_zones"); z && !z->empty()) zone = *z;
        ++h.blocks[{node, *state, zone}];
    }
    h.memmap_on_memory = collector::read_memmap_on_memory(root_);
    h.auto_online_policy = read_word(mem / "auto_online_blocks");
    if (auto s = read_word(root_ / "proc/sys/kernel/bpf_stats_enabled")) h.bpf_stats_enabled = *s == "1";
    return h;
}

// ---- rendering ---------------------------------------------------------------

namespace {

std::string node_label(int node) { return node < 0 ? "unknown" : std::to_string(node); }

const char* locality(int node, int memmap_node) {
    if (node < 0 || memmap_node < 0) return "unknown";
    return node == memmap_node ? "local" : "remote";
}

MetricType type_of(MetricKind k) {
    switch (k) {
        case MetricKind::Counter: return MetricType::Counter;
        case MetricKind::Gauge: return MetricType::Gauge;
        case MetricKind::Histogram: return MetricType::Histogram;
    }
    return MetricType::Untyped;
}

// Builds one family from its catalog entry; label values are given in the
// catalog's label order, so a family cannot drift from its documentation.
class FamilyBuilder {
public:
    explicit FamilyBuilder(const std::string& name) : def_(metric_def(name)) {
        fam_.name = def_.name;
        fam_.help = def_.help;
        fam_.type = type_of(def_.kind);
    }
    ClientMetric& add(std::vector<std::string> values) {
        if (values.size() != def_.labels.size())
            throw std::logic_error(def_.name + ": " + std::to_string(values.size()) + " label values for " +
                                   std::to_string(def_.labels.size()) + " labels");
        ClientMetric& m = fam_.metric.emplace_back();
        m.label.reserve(values.size());
        for (std::size_t i = 0; i < values.size(); ++i) m.label.push_back({def_.labels[i], std::move(values[i])});
        return m;
    }
    void counter(std::vector<std::string> values, double v) { add(std::move(values)).counter.value = v; }
    void gauge(std::vector<std::string> values, double v) { add(std::move(values)).gauge.value = v; }
    void finish_into(std::vector<MetricFamily>& out) {
        if (!fam_.metric.empty()) out.push_back(std::move(fam_));
    }

private:
    const MetricDef& def_;
    MetricFamily fam_;
};

// The collector's log2 histograms summed over nodes.
struct Merged {
    std::array<std::uint64_t, Log2Histogram::kBuckets> buckets{};
    std::uint64_t count = 0;
    std::uint64_t sum_ns = 0;
    void add(const Log2Histogram& h) {
        for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.buckets()[i];
        count += h.count();
        sum_ns += h.sum_ns();
    }
};

// Cumulative buckets at the served bounds, from per-bucket counts.
void fill_histogram(ClientMetric::Histogram& out, const Merged& h) {
    out.sample_count = h.count;
    out.sample_sum = static_cast<double>(h.sum_ns) / 1e9;
    out.bucket.reserve(kLastBucketLog2 - kFirstBucketLog2 + 2);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= kLastBucketLog2 && i + 1 < Log2Histogram::kBuckets; ++i) {
        cumulative += h.buckets[i];
        if (i >= kFirstBucketLog2) out.bucket.push_back({cumulative, Log2Histogram::upper_bound_seconds(i)});
    }
    out.bucket.push_back({h.count, std::numeric_limits<double>::infinity()});
}

// The families aggregated from the probes' records (source "probes").
void add_probe_families(const collector::Stats& s, std::vector<MetricFamily>& out) {
    {
        std::map<std::pair<collector::Phase, collector::MemmapMode>, Merged> merged;
        for (const auto& [key, h] : s.latency) merged[{std::get<0>(key), std::get<2>(key)}].add(h);
        FamilyBuilder f("memhp_operation_duration_seconds");
        for (const auto& [key, h] : merged)
            fill_histogram(f.add({collector::phase_name(key.first), collector::mode_name(key.second)}).histogram, h);
        f.finish_into(out);
    }
    {
        // The pairs the kernel nests are always served (0 without
        // auto-online), so a rate() over them has a series from the start.
        using collector::Phase;
        auto nested = s.nested;
        nested.try_emplace({Phase::Online, Phase::Add}, 0);
        nested.try_emplace({Phase::Offline, Phase::Remove}, 0);
        FamilyBuilder f("memhp_nested_operations_total");
        for (const auto& [key, n] : nested)
            f.counter({collector::phase_name(std::get<0>(key)), collector::phase_name(std::get<1>(key))},
                      static_cast<double>(n));
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_operation_failures_total");
        for (const auto& [key, n] : s.failures)
            f.counter({collector::phase_name(std::get<0>(key)), errno_name(std::get<1>(key))}, static_cast<double>(n));
        f.finish_into(out);
    }
    const double page = 4096;  // the collector's pages are 4 KiB (x86-64)
    {
        // An add without altmap records a zero altmap entry: served as 0 bytes,
        // which keeps the altmap series (and its panels) present in both modes.
        FamilyBuilder f("memhp_memmap_allocated_bytes_total");
        for (const auto& [key, pages] : s.memmap_pages) {
            const auto& [source, node, memmap_node] = key;
            f.counter({collector::source_name(source), node_label(node), node_label(memmap_node),
                       locality(node, memmap_node)},
                      static_cast<double>(pages) * page);
        }
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_add_free_memory_consumed_bytes_total");
        for (const auto& [node, bytes] : s.free_bytes_consumed)
            f.counter({node_label(node)}, static_cast<double>(bytes));
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_memmap_on_memory_unused_total");
        f.counter({}, static_cast<double>(s.memmap_on_memory_unused));
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_hotplugged_memory_bytes");
        for (const auto& [node, bytes] : s.present_bytes) f.gauge({node_label(node)}, static_cast<double>(bytes));
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_hotplugged_memmap_bytes");
        for (const auto& [key, bytes] : s.memmap_bytes)
            f.gauge({collector::source_name(std::get<0>(key)), node_label(std::get<1>(key))},
                    static_cast<double>(bytes));
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_kernel_memmap_bytes");
        if (s.kernel_memmap_pages) f.gauge({}, static_cast<double>(*s.kernel_memmap_pages) * page);
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_kernel_memmap_mismatches_total");
        f.counter({}, static_cast<double>(s.kernel_memmap_mismatches));
        f.finish_into(out);
    }
}

// The host's memory blocks and hot-plug settings, read at scrape time.
void add_host_families(const HostState& host, std::vector<MetricFamily>& out) {
    {
        FamilyBuilder f("memhp_memory_blocks");
        for (const auto& [key, n] : host.blocks) {
            const auto& [node, state, zone] = key;
            f.gauge({node_label(node), state, zone}, static_cast<double>(n));
        }
        f.finish_into(out);
    }
    if (host.block_size_bytes) {
        FamilyBuilder f("memhp_memory_block_size_bytes");
        f.gauge({}, static_cast<double>(*host.block_size_bytes));
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_memmap_on_memory_enabled");
        const bool on = host.memmap_on_memory && (*host.memmap_on_memory == "Y" || *host.memmap_on_memory == "force");
        f.gauge({}, on ? 1 : 0);
        f.finish_into(out);
    }
    if (host.auto_online_policy) {
        FamilyBuilder f("memhp_memory_auto_online_info");
        f.gauge({*host.auto_online_policy}, 1);
        f.finish_into(out);
    }
}

// About the exporter and its probes.
void add_exporter_families(const ProbeSnapshot& p, const HostState& host, std::vector<MetricFamily>& out) {
    const auto& s = p.stats;
    {
        FamilyBuilder f("memhp_build_info");
        f.gauge({kVersion}, 1);
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_probe_attached");
        for (const auto& st : p.probes) f.gauge({st.program, st.target, st.mode}, st.attached ? 1 : 0);
        f.finish_into(out);
    }
    auto single_counter = [&](const char* name, std::uint64_t v) {
        FamilyBuilder f(name);
        f.counter({}, static_cast<double>(v));
        f.finish_into(out);
    };
    single_counter("memhp_events_total", s.events);
    single_counter("memhp_event_decode_errors_total", s.decode_errors);
    single_counter("memhp_ring_buffer_dropped_events_total", p.dropped_events);
    single_counter("memhp_interrupt_page_events_total", p.interrupt_page_events);
    {
        FamilyBuilder f("memhp_stale_operations_total");
        f.counter({"missed_exit"}, static_cast<double>(p.op_health.stale_missed_exit));
        f.counter({"task_gone"}, static_cast<double>(p.op_health.swept_task_gone));
        f.counter({"too_old"}, static_cast<double>(p.op_health.swept_too_old));
        f.finish_into(out);
    }
    {
        FamilyBuilder f("memhp_untraced_operations_total");
        f.counter({"ops_map_full"}, static_cast<double>(p.op_health.ops_map_full));
        f.counter({"nested_too_deep"}, static_cast<double>(p.op_health.nest_overflow));
        f.finish_into(out);
    }
    single_counter("memhp_orphan_page_events_total", s.orphan_page_events);
    if (host.bpf_stats_enabled) {
        FamilyBuilder f("memhp_bpf_stats_enabled");
        f.gauge({}, *host.bpf_stats_enabled ? 1 : 0);
        f.finish_into(out);
    }
    if (host.bpf_stats_enabled.value_or(false)) {
        FamilyBuilder t("memhp_bpf_program_run_seconds_total");
        FamilyBuilder n("memhp_bpf_program_runs_total");
        for (const auto& r : p.run_stats) {
            t.counter({r.program}, static_cast<double>(r.run_time_ns) / 1e9);
            n.counter({r.program}, static_cast<double>(r.run_count));
        }
        t.finish_into(out);
        n.finish_into(out);
    }
}

}  // namespace

std::vector<MetricFamily> build_families(const ProbeSnapshot& p, const HostState& host) {
    static_assert(kLastBucketLog2 + 1 < Log2Histogram::kBuckets, "served bounds must lie inside the collector's");
    std::vector<MetricFamily> out;
    out.reserve(metric_catalog().size());
    add_probe_families(p.stats, out);
    add_host_families(host, out);
    add_exporter_families(p, host, out);
    return out;
}

std::vector<MetricFamily> MetricsCollectable::Collect() const {
    // Host state first: sysfs reads happen with no lock held. The snapshot is
    // the only moment the scrape touches the consumer's lock.
    const HostState host = host_->read();
    const ProbeSnapshot snap = source_->snapshot(host.bpf_stats_enabled.value_or(false));
    return build_families(snap, host);
}

}  // namespace memhp::exporter
