// SPDX-License-Identifier: Apache-2.0
#pragma once
// `memhp trace --json` run inside a lab guest around some work, for the VM
// tests of the probe paths.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memhp/lab/guest_trace.hpp"
#include "vm_support.hpp"

namespace memhp::vmtest {

using nlohmann::json;

// Runs `memhp trace --json [extra]` in the guest (under `env` entries such
// as MEMHP_PROBES=fentry) around `body`: waits until it has attached, runs
// `body`, stops it and returns the operations it reported; the full output
// goes to `raw`.
template <typename Fn>
std::vector<json> traced_with(lab::Guest& g, const std::vector<std::string>& env, Fn&& body, std::string* raw,
                              const std::vector<std::string>& extra = {}) {
    lab::GuestTrace trace(g, extra, env);
    body();
    const std::string text = trace.stop();
    if (raw) *raw = text;
    return lab::parse_ops(text);
}

// `blocks` 128 MiB blocks plugged into virtio-mem device 0 and unplugged
// again, traced: waits until the last remove has reached the tracer (the
// driver unplugs from the device first, then removes the block).
struct VirtioMemTrace {
    lab::VirtioMemResize plug, unplug;
    std::string raw;
    std::vector<json> ops;
};
inline VirtioMemTrace traced_virtio_mem_plug(lab::Guest& g, lab::MemoryLab& mem, std::size_t blocks) {
    VirtioMemTrace t;
    lab::GuestTrace trace(g);
    t.plug = mem.resize_virtio_mem(0, blocks * kBlock);
    t.unplug = mem.resize_virtio_mem(0, 0);
    (void)trace.take([blocks](const std::vector<json>& o) { return lab::count_phase(o, "remove") >= blocks; },
                     std::chrono::seconds(60));
    t.raw = trace.stop();
    t.ops = lab::parse_ops(t.raw);
    return t;
}

inline std::vector<json> of_phase(const std::vector<json>& ops, const std::string& phase) {
    std::vector<json> out;
    for (const auto& o : ops)
        if (o["phase"] == phase) out.push_back(o);
    return out;
}

// One 128 MiB DIMM on memoryless node 1, traced: add, online movable,
// offline, remove.
inline std::vector<json> traced_one_block_cycle(lab::Guest& g, lab::MemoryLab& mem, std::string* raw,
                                                const std::vector<std::string>& env = {},
                                                const std::vector<std::string>& extra = {}) {
    return traced_with(
        g, env,
        [&mem] {
            auto c = lab::run_cycle(mem, {kBlock, 1, lab::Zone::Movable}, 1);
            if (!c.ok()) throw Error("cycle failed: " + lab::to_json(c).dump());
        },
        raw, extra);
}

// A DIMM of `size` on node 1 added and removed again, never onlined, traced.
inline std::vector<json> traced_add_and_remove(lab::Guest& g, lab::MemoryLab& mem, std::uint64_t size,
                                               std::string* raw) {
    return traced_with(
        g, {},
        [&mem, size] {
            auto d = mem.add_dimm(size, 1);
            mem.remove(d);
        },
        raw);
}

// What every traced one-block cycle shows, whatever the probe path.
inline void check_one_block_cycle(const std::vector<json>& ops, const std::string& raw) {
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    ASSERT_EQ(of_phase(ops, "online").size(), 1u) << raw;
    ASSERT_EQ(of_phase(ops, "offline").size(), 1u) << raw;
    ASSERT_EQ(of_phase(ops, "remove").size(), 1u) << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["nid"], 1) << raw;
    EXPECT_EQ(add["nr_pages"], kBlockPages);
    EXPECT_EQ(add["ret"], 0);
    EXPECT_GT(add["duration_ns"].get<std::uint64_t>(), 0u);
    const auto online = of_phase(ops, "online")[0];
    EXPECT_EQ(online["nid"], 1);
    EXPECT_EQ(online["zone"], "Movable");
    EXPECT_EQ(online["ret"], 0);
    EXPECT_EQ(of_phase(ops, "offline")[0]["ret"], 0);
    EXPECT_EQ(of_phase(ops, "remove")[0]["ret"], 0);
    EXPECT_EQ(of_phase(ops, "remove")[0]["nr_pages"], kBlockPages);
    EXPECT_NE(raw.find("live: hot-plugged 0 B, memmap 0 B"), std::string::npos) << "gauges back to zero:\n" << raw;
}

}  // namespace memhp::vmtest
