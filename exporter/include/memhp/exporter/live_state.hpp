// SPDX-License-Identifier: Apache-2.0
#pragma once
// The exporter's view of its collector session, for the scrape thread. The
// session's Aggregator is the one copy of the state: the ring-buffer thread
// consumes records one at a time under the session's lock; a scrape takes
// that lock only to copy the Stats, so neither waits on the other for more
// than one record or one copy.
#include <cstdint>
#include <optional>
#include <string>

#include "memhp/collector/session.hpp"
#include "memhp/exporter/metrics.hpp"

namespace memhp::exporter {

class LiveState : public SnapshotSource {
public:
    // `session` (attached: its backend's report, drop counter and program
    // fds are read at scrape time) must outlive every scrape.
    explicit LiveState(const collector::Session& session) : session_(session) {}
    LiveState(const LiveState&) = delete;
    LiveState& operator=(const LiveState&) = delete;

    [[nodiscard]] ProbeSnapshot snapshot(bool with_run_stats) const override;
    [[nodiscard]] std::uint64_t events() const { return session_.events(); }

private:
    const collector::Session& session_;
};

// Run time and count of a BPF program (bpf_prog_info; non-zero only while
// kernel.bpf_stats_enabled=1). nullopt when the fd cannot be queried.
[[nodiscard]] std::optional<ProgramRunStats> program_run_stats(const std::string& name, int fd);

}  // namespace memhp::exporter
