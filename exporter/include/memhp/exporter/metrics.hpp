// SPDX-License-Identifier: Apache-2.0
#pragma once
// What memhp-exporter serves: the metric catalog (names, types, help, labels;
// the single source for docs/metrics.md), the host state read from sysfs at
// scrape time, and the rendering of a collector snapshot into Prometheus
// MetricFamily values. No state of its own: every scrape builds the families
// from the aggregator's state, a copy of which is taken under a short lock.
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "memhp/collector/aggregator.hpp"
#include "memhp/collector/probe_backend.hpp"

namespace memhp::exporter {

// ---- catalog -----------------------------------------------------------------

enum class MetricKind { Counter, Gauge, Histogram };

struct MetricDef {
    std::string name;
    MetricKind kind;
    std::vector<std::string> labels;
    std::string help;
    std::string source;  // "probes", "sysfs", "exporter": where the value comes from
};

// Every metric memhp-exporter can serve, in output order.
[[nodiscard]] const std::vector<MetricDef>& metric_catalog();
[[nodiscard]] const MetricDef& metric_def(const std::string& name);  // throws std::out_of_range
// docs/metrics.md, generated from the catalog (memhp-exporter --list-metrics).
[[nodiscard]] std::string metrics_markdown();

// Histogram bounds served for memhp_operation_duration_seconds: the collector's
// log2 buckets from 2^kFirstBucketLog2 ns (~1 us) to 2^kLastBucketLog2 ns (~69 s),
// then +Inf. Lower buckets fold into the first (bounds are cumulative).
inline constexpr std::size_t kFirstBucketLog2 = 10;
inline constexpr std::size_t kLastBucketLog2 = 36;

// ---- host state --------------------------------------------------------------

struct HostState {
    std::optional<std::uint64_t> block_size_bytes;
    // (node, state, zone) -> memory blocks
    std::map<std::tuple<int, std::string, std::string>, std::uint64_t> blocks;
    std::optional<std::string> memmap_on_memory;  // "Y", "N", "force"; nullopt: parameter absent
    std::optional<std::string> auto_online_policy;
    std::optional<bool> bpf_stats_enabled;  // kernel.bpf_stats_enabled
};

class HostSource {
public:
    virtual ~HostSource() = default;
    [[nodiscard]] virtual HostState read() = 0;
};

// Reads <root>/sys/devices/system/memory, /sys/module/memory_hotplug and
// /proc/sys/kernel/bpf_stats_enabled. Missing files leave fields empty; never throws.
class SysfsHostSource : public HostSource {
public:
    explicit SysfsHostSource(std::filesystem::path root = "/") : root_(std::move(root)) {}
    [[nodiscard]] HostState read() override;

private:
    std::filesystem::path root_;
};

// ---- what the probes say -----------------------------------------------------

struct ProgramRunStats {
    std::string program;
    std::uint64_t run_time_ns = 0;
    std::uint64_t run_count = 0;
};

struct ProbeSnapshot {
    collector::Stats stats;
    std::uint64_t dropped_events = 0;
    std::uint64_t interrupt_page_events = 0;
    collector::OpHealth op_health;
    std::vector<collector::AttachStatus> probes;
    std::vector<ProgramRunStats> run_stats;  // read only when bpf_stats_enabled
};

// Thread-safe source of snapshots; the scrape thread calls it.
class SnapshotSource {
public:
    virtual ~SnapshotSource() = default;
    [[nodiscard]] virtual ProbeSnapshot snapshot(bool with_run_stats) const = 0;
};

// ---- rendering ---------------------------------------------------------------

// Builds every family of the catalog that has samples, in catalog order.
[[nodiscard]] std::vector<prometheus::MetricFamily> build_families(const ProbeSnapshot& probes, const HostState& host);

// The Collectable the Exposer serves: snapshot + host state + build, per scrape.
class MetricsCollectable : public prometheus::Collectable {
public:
    MetricsCollectable(std::shared_ptr<const SnapshotSource> source, std::shared_ptr<HostSource> host)
        : source_(std::move(source)), host_(std::move(host)) {}
    [[nodiscard]] std::vector<prometheus::MetricFamily> Collect() const override;

private:
    std::shared_ptr<const SnapshotSource> source_;
    std::shared_ptr<HostSource> host_;
};

// "EBUSY" for 16; the number as text when the name is unknown.
[[nodiscard]] std::string errno_name(int err);

}  // namespace memhp::exporter
