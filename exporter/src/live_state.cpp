// SPDX-License-Identifier: Apache-2.0
#include "memhp/exporter/live_state.hpp"

#include <bpf/bpf.h>

namespace memhp::exporter {

ProbeSnapshot LiveState::snapshot(bool with_run_stats) const {
    ProbeSnapshot s;
    s.stats = session_.stats();  // the only moment under the session's lock
    // The backend's report is immutable once attached, the drop counter is
    // an atomic read of BPF memory, run stats are syscalls.
    const auto& probes = session_.backend();
    s.dropped_events = probes.dropped_events();
    s.interrupt_page_events = probes.interrupt_page_events();
    s.op_health = probes.op_health();
    s.probes = probes.attach_report();
    if (with_run_stats)
        for (const auto& [name, fd] : probes.program_fds())
            if (auto r = program_run_stats(name, fd)) s.run_stats.push_back(*r);
    return s;
}

std::optional<ProgramRunStats> program_run_stats(const std::string& name, int fd) {
    bpf_prog_info info{};
    __u32 len = sizeof info;
    if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return std::nullopt;
    return ProgramRunStats{name, info.run_time_ns, info.run_cnt};
}

}  // namespace memhp::exporter
