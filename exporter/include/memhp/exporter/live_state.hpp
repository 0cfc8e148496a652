// SPDX-License-Identifier: Apache-2.0
#pragma once
// The exporter's one copy of the state: the collector's Aggregator behind a
// mutex. The ring-buffer thread consumes records one at a time under the
// lock; a scrape takes the lock only to copy the Stats, so neither waits on
// the other for more than one record or one copy.
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "memhp/collector/aggregator.hpp"
#include "memhp/collector/probes.hpp"
#include "memhp/exporter/metrics.hpp"

namespace memhp::exporter {

class LiveState : public SnapshotSource {
public:
    LiveState(std::unique_ptr<collector::NodeResolver> nodes, collector::AggregatorConfig cfg);
    LiveState(const LiveState&) = delete;
    LiveState& operator=(const LiveState&) = delete;

    // Ring-buffer callback.
    void consume(std::span<const std::uint8_t> raw);
    void consume(const memhp_event& ev);
    // Once, after the probes are attached and before serving: attach report,
    // drop counter and program fds come from there. Must outlive this object's use.
    void set_probes(const collector::HotplugProbes* probes);

    [[nodiscard]] ProbeSnapshot snapshot(bool with_run_stats) const override;
    [[nodiscard]] std::uint64_t events() const;

private:
    mutable std::mutex mu_;
    std::unique_ptr<collector::NodeResolver> nodes_;
    collector::Aggregator agg_;
    const collector::HotplugProbes* probes_ = nullptr;
};

// Run time and count of a BPF program (bpf_prog_info; non-zero only while
// kernel.bpf_stats_enabled=1). nullopt when the fd cannot be queried.
[[nodiscard]] std::optional<ProgramRunStats> program_run_stats(const std::string& name, int fd);

}  // namespace memhp::exporter
