// SPDX-License-Identifier: Apache-2.0
#pragma once
// `memhp ab --peer bpftrace`: the same phases timed a second time, in the
// same guest and the same cycles, by an independent tool (Debian's bpftrace)
// on the same kernel functions, so a reader can check memhp's latencies
// against it. Also reports both tools' time from spawn to all probes attached.
#include <nlohmann/json.hpp>
#include <string>

#include "memhp/lab/guest_trace.hpp"

namespace memhp::ab {

// The bpftrace program: fentry/fexit (kfunc/kretfunc) on add_memory_resource,
// memory_subsys_online, memory_subsys_offline and try_remove_memory, the
// functions memhp's add, online, offline and remove phases span; one JSON
// line {"phase", "duration_ns"} per call.
[[nodiscard]] const std::string& bpftrace_peer_program();
// bpftrace running that program, line-buffered; attached once it holds a
// BPF link per probe.
[[nodiscard]] lab::TracerCommand bpftrace_peer_command(const std::string& bpftrace);

// Per phase, over the arm's cycles that have both tools' records: pairs of
// (memhp, bpftrace) per-cycle durations, their medians, the ratio of the
// medians and the median and largest per-cycle relative difference
// |bpftrace - memhp| / memhp. Cycles where the tools saw a different
// number of calls of a phase are counted in "unmatched" and left out.
[[nodiscard]] nlohmann::json peer_agreement(const nlohmann::json& arm);

// The summary's "memhp vs bpftrace" section; empty when the run had no peer.
[[nodiscard]] std::string peer_markdown(const nlohmann::json& results);

}  // namespace memhp::ab
