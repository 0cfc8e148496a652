// SPDX-License-Identifier: Apache-2.0
#pragma once
// A large exporter state for benchmarks: 64 NUMA nodes, every phase in both
// memmap modes on every node (640 latency histograms with observations across
// the served buckets), memmap from three sources (local and remote), failures
// for four errnos, 16 probes with run-time stats, and 3 block states per node.
#include <cerrno>

#include "memhp/exporter/metrics.hpp"

namespace memhp::bench {

inline exporter::ProbeSnapshot large_snapshot(int nodes = 64) {
    using namespace memhp::collector;
    exporter::ProbeSnapshot p;
    auto& s = p.stats;
    for (int n = 0; n < nodes; ++n) {
        for (auto phase : kAllPhases)
            for (auto mode : {MemmapMode::Altmap, MemmapMode::PageAllocator}) {
                auto& h = s.latency[{phase, n, mode}];
                for (std::uint64_t ns = 1500; ns < (1ull << 36); ns *= 3) h.observe(ns + static_cast<std::uint64_t>(n));
                s.operations[{phase, n, mode}] = h.count();
            }
        const int other = (n + 1) % nodes;
        s.memmap_pages[{MemmapSource::Altmap, n, n}] = 512ull * (n + 1);
        s.memmap_pages[{MemmapSource::PageAllocator, n, other}] = 512ull * (n + 2);
        s.memmap_pages[{MemmapSource::PageTables, n, n}] = 3;
        s.memmap_pages[{MemmapSource::PageTables, n, other}] = 2;
        s.free_bytes_consumed[n] = (2ull << 20) * (n + 1);
        s.present_bytes[n] = (128ll << 20) * (n % 4);
        for (auto src : {MemmapSource::Altmap, MemmapSource::PageAllocator, MemmapSource::PageTables})
            s.memmap_bytes[{src, n}] = (2ll << 20) * (n % 3);
    }
    for (int e : {EBUSY, EAGAIN, EINTR, ENOMEM}) s.failures[{Phase::Offline, e}] = 7;
    s.failures[{Phase::Add, EEXIST}] = 1;
    s.events = 123456789;
    for (int i = 0; i < 16; ++i) {
        const std::string name = "prog_" + std::to_string(i);
        p.probes.push_back({name, "target_function_" + std::to_string(i), i % 2 ? "fexit" : "fentry", true, i < 2, ""});
        p.run_stats.push_back({name, 123456789ull * (i + 1), 1000ull * (i + 1)});
    }
    return p;
}

inline exporter::HostState large_host(int nodes = 64) {
    exporter::HostState h;
    h.block_size_bytes = 2ull << 30;
    for (int n = 0; n < nodes; ++n) {
        h.blocks[{n, "online", "Normal"}] = 16;
        h.blocks[{n, "online", "Movable"}] = 16;
        h.blocks[{n, "offline", "none"}] = 2;
    }
    h.memmap_on_memory = "Y";
    h.auto_online_policy = "online_movable";
    h.bpf_stats_enabled = true;
    return h;
}

}  // namespace memhp::bench
