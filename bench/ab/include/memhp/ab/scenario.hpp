// SPDX-License-Identifier: Apache-2.0
#pragma once
// `memhp ab --scenario`: the two failure modes memmap_on_memory exists for,
// set up in every arm's guest before the hot-adds and told apart per add.
//
//   pressure:   memhp-hog locks node 0's free memory down to a margin (swept
//               over --margins); the classic memmap (2 MiB from the page
//               allocator per 128 MiB) has to come out of that margin.
//   fragmented: memhp-hog leaves node 0 with plenty of free memory but no
//               free block of order >= 9, and compaction off.
//
// Each add is classified: succeeded, failed (errno), memmap mapped with base
// pages instead of a PMD (vmemmap_populate_basepages), OOM kill while it ran
// (/proc/vmstat oom_kill), and the free memory it consumed (the probes).
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "memhp/lab/cycle.hpp"
#include "memhp/lab/guest.hpp"
#include "memhp/lab/guest_trace.hpp"
#include "memhp/lab/memory.hpp"

namespace memhp::ab {

enum class Scenario { None, Pressure, Fragmented };
// "none" | "pressure" | "fragmented"; UsageError otherwise.
[[nodiscard]] Scenario parse_scenario(const std::string& text);
[[nodiscard]] const char* scenario_name(Scenario s);
// "64M,32M,16M" -> bytes, largest first; UsageError on a bad or zero size.
[[nodiscard]] std::vector<std::uint64_t> parse_margins(const std::string& text);

// memhp-hog running in a guest (bench/ab/hog/memhp_hog.cpp).
class GuestHog {
public:
    using Ms = std::chrono::milliseconds;
    // Starts it and waits for "ready"; throws Error with its output if it
    // exits first (e.g. OOM-killed on the way to a margin below the
    // kernel's watermarks) or times out.
    GuestHog(lab::Machine& guest, Scenario s, std::uint64_t margin, int node, Ms timeout);
    ~GuestHog();
    GuestHog(const GuestHog&) = delete;
    GuestHog& operator=(const GuestHog&) = delete;

    // What it reported when ready: mem_free_bytes, watermarks, buddyinfo, ...
    [[nodiscard]] const nlohmann::json& ready() const { return ready_; }
    [[nodiscard]] int pid() const { return pid_; }
    // False once it has exited (killed by the OOM killer, most likely).
    [[nodiscard]] bool alive();
    [[nodiscard]] std::optional<int> exit_code() const { return exit_; }
    // SIGTERM and wait; the guest gets its memory back.
    void stop(Ms timeout = Ms(30000));

private:
    lab::Machine& guest_;
    int pid_ = -1;
    std::optional<int> exit_;
    std::string out_;
    nlohmann::json ready_;
};

// The memmap of one add record, split by how it was mapped.
struct AddMemmap {
    std::uint64_t expected = 0;    // memmap pages the range needs (64 bytes per 4 KiB page)
    std::uint64_t altmap = 0;      // carved from the added range
    std::uint64_t pmd = 0;         // PMD-sized (order-9) blocks from the page allocator
    std::uint64_t base_pages = 0;  // order-0 pages from the page allocator: the base-page fallback
};
// From a `memhp trace --json` add record. Uses memmap.base_pages when the
// collector saw such pages (it knew the call sites); otherwise the memmap
// pages that are neither altmap nor PMD blocks came as order-0 pages, which
// a collector without call sites counts with the page tables.
[[nodiscard]] AddMemmap split_add_memmap(const nlohmann::json& add_record);

// /proc/vmstat's oom_kill counter in the guest (0 if absent).
[[nodiscard]] std::uint64_t guest_oom_kills(lab::Machine& guest);

// One scenario cycle: the DIMMs are hot-added one by one, each waited for
// until its blocks show up or the probes report its add failed; the ones
// that were added are onlined, offlined and removed; every DIMM is unplugged
// again. Never throws but Interrupted.
struct ScenarioCycle {
    lab::CycleRecord cycle;
    std::vector<nlohmann::json> ops;
    nlohmann::json scenario;  // "adds": one per DIMM (docs/ab-json.md), "oom_kills", "harness_ok", ...
};
[[nodiscard]] ScenarioCycle run_scenario_cycle(lab::Machine& guest, lab::MemoryLab& mem, lab::GuestTrace& trace,
                                               const lab::CycleOptions& opts, int index);

// Per arm and margin: adds, succeeded, failed, base-page fallbacks, OOM
// kills; the margin where each arm first failed; the sentence to quote.
// Computed from the cycles, so `memhp report` can redo it.
[[nodiscard]] nlohmann::json scenario_summary(const nlohmann::json& results);
[[nodiscard]] std::string scenario_markdown(const nlohmann::json& results);

}  // namespace memhp::ab
