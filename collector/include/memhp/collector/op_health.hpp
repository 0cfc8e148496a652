// SPDX-License-Identifier: Apache-2.0
#pragma once
// The health of the per-task op state in BPF (hotplug_ops.bpf.h): ops whose
// exit never came, begins that found the `ops` map full or nested too deep,
// and the user-space sweep that ages out ops left behind by tasks that are
// gone or by exits that never came.
#include <cstdint>
#include <functional>

namespace memhp::collector {

struct OpHealth {
    std::uint64_t stale_missed_exit = 0;  // BPF: a begin found the op in flight already returned
    std::uint64_t swept_task_gone = 0;    // user space: the op's task no longer exists
    std::uint64_t swept_too_old = 0;      // user space: in flight longer than the age limit
    std::uint64_t ops_map_full = 0;       // BPF: begins not traced, the map was full
    std::uint64_t nest_overflow = 0;      // BPF: begins not traced, nested two deep
};

enum class OpAge { Live, TaskGone, TooOld };
// What the sweep makes of an op that began at t0_ns (CLOCK_MONOTONIC, as
// bpf_ktime_get_ns) on a task that is or is not alive.
[[nodiscard]] OpAge classify_op(std::uint64_t now_ns, std::uint64_t t0_ns, std::uint64_t max_age_ns, bool task_alive);

struct SweepCounts {
    std::uint64_t task_gone = 0;
    std::uint64_t too_old = 0;
};
// Deletes the stale entries of an `ops` map (and their `outer_ops` entry),
// decrementing *inflight for each one it removed (BPF may end the same op at
// the same time: whoever deletes it accounts for it). The value's second u64
// is the op's t0.
SweepCounts sweep_ops_map(int ops_fd, int outer_fd, volatile std::uint32_t* inflight, std::uint64_t max_age_ns,
                          const std::function<bool(std::uint32_t)>& task_alive);
// True while /proc/<tid> exists.
[[nodiscard]] bool task_exists(std::uint32_t tid);
[[nodiscard]] std::uint64_t monotonic_ns();

}  // namespace memhp::collector
