// SPDX-License-Identifier: Apache-2.0
// memhp on the Debian kernels at both ends of the matrix: bullseye's 5.10
// (no fetching BPF atomics, no memmap_on_memory) and sid's 7.2 (split
// packages under /usr/lib/modules). Each suite boots its kernel once; the
// attach line ("attached N of M probes in T ms") is printed for the README's
// kernel matrix.
#include <gmock/gmock.h>

#include <regex>
#include <sstream>

#include "memhp/process.hpp"

#include "trace_support.hpp"

namespace memhp::vmtest {
namespace {

std::string memhp_path() { return (lab::default_agent_path().parent_path() / "memhp").string(); }

// Traces one 128 MiB DIMM cycle on node 1 and prints the attach figures.
std::vector<json> traced_cycle(lab::Guest& g, lab::MemoryLab& mem, std::string* raw,
                               lab::CycleRecord* cycle = nullptr) {
    lab::GuestTrace trace(g);
    std::cout << "[kernel " << g.release() << "] " << trace.attach_line()
              << " (host side, from spawn: " << static_cast<int>(trace.attach_seconds() * 1000) << " ms)" << std::endl;
    auto c = lab::run_cycle(mem, {kBlock, 1, lab::Zone::Movable}, 1);
    *raw = trace.stop();
    // The probes left out and why, for the kernel matrix.
    std::istringstream lines(*raw);
    for (std::string l; std::getline(lines, l);)
        if (l.starts_with("  ") && l.find(": attached") == std::string::npos &&
            l.find("start-up:") == std::string::npos && l.find(':') != std::string::npos &&
            l.find('{') == std::string::npos)
            std::cout << "[kernel " << g.release() << "] " << l << std::endl;
    if (!c.ok()) throw Error("cycle failed: " + lab::to_json(c).dump());
    // The trace's last record says what it lost (schema 4): here, nothing.
    const auto summary = lab::parse_trace_summary(*raw);
    if (!summary) throw Error("memhp trace ended without its summary record:\n" + *raw);
    if (summary->lost() || summary->events == 0)
        throw Error("memhp trace lost events, or saw none, in one quiet cycle:\n" + *raw);
    if (cycle) *cycle = c;
    return lab::parse_ops(*raw);
}

// "attached 21 of 23 probes" -> {21, 23}
std::pair<int, int> attached_of(const std::string& raw) {
    static const std::regex re(R"(attached (\d+) of (\d+) probes)");
    std::smatch m;
    if (!std::regex_search(raw, m, re)) return {-1, -1};
    return {std::stoi(m[1].str()), std::stoi(m[2].str())};
}

class Kernel510 : public GuestSuite<Kernel510> {
public:
    static lab::GuestConfig Config() { return config("5.10", false); }
};

TEST_F(Kernel510, BullseyeKernelBootsFromItsOwnAptLists) {
    EXPECT_TRUE(guest_->release().starts_with("5.10.")) << guest_->release();
    EXPECT_EQ(guest_->kernel().suite, "bullseye");
    EXPECT_TRUE(guest_->kernel().package.starts_with("linux-image-5.10.")) << guest_->kernel().package;
    EXPECT_EQ(mem_->memmap_on_memory_param(), "absent") << "5.10 has no memmap_on_memory";
    EXPECT_EQ(lab::kernel_config_has(guest_->kernel(), "MHP_MEMMAP_ON_MEMORY"), false);
}

// 5.10's try_remove_memory(nid, start, size), arch_remove_memory(nid, ...),
// offline_pages(start_pfn, nr_pages) and online_pages(..., online_type, nid)
// differ from 6.1's: memhp's table has a variant of each for that signature,
// chosen by the kernel's BTF, so the whole cycle is traced. What 5.10 lacks
// (mhp_init/deinit_memmap_on_memory: no memmap_on_memory at all) is
// reported as not traced, with the reason, as is vmemmap_populate (notrace
// there, as on 6.1: populate is inferred from __add_pages).
TEST_F(Kernel510, EveryPhaseIsTracedAndThePageAllocatorMemmapCounted) {
    std::string raw;
    auto ops = traced_cycle(*guest_, *mem_, &raw);
    auto [attached, total] = attached_of(raw);
    std::cout << "[kernel " << guest_->release() << "] probes attached " << attached << " of " << total << std::endl;
    // Left out: vmemmap_populate (entry, exit and its sub-phase), the two
    // memmap_on_memory hooks and mhp_init_memmap_on_memory's sub-phase, and
    // the sub-phases of init_per_zone_wmark_min and memmap_init_range (not
    // in 5.10's BTF nor kprobe-able).
    EXPECT_EQ(attached, total - 8) << raw;
    EXPECT_EQ(raw.find("BPF_STX uses reserved fields"), std::string::npos) << raw;
    EXPECT_EQ(raw.find("its parameters differ on this kernel"), std::string::npos) << raw;
    EXPECT_NE(raw.find("mhp_init_memmap_on_memory"), std::string::npos) << raw;
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    ASSERT_EQ(of_phase(ops, "online").size(), 1u) << raw;
    ASSERT_EQ(of_phase(ops, "offline").size(), 1u) << raw;
    ASSERT_EQ(of_phase(ops, "remove").size(), 1u) << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["nid"], 1) << add.dump();
    EXPECT_EQ(add["nr_pages"], kBlockPages);
    EXPECT_EQ(add["ret"], 0);
    EXPECT_EQ(add["mode"], "page_allocator") << add.dump();
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], kMemmapPages) << "one order-9 block: " << add.dump();
    EXPECT_EQ(add["memmap"]["remote_pages"], kMemmapPages) << "node 1 is memoryless: " << add.dump();
    EXPECT_EQ(add["memmap"]["local_pages"], 0);
    const auto online = of_phase(ops, "online")[0];
    EXPECT_EQ(online["ret"], 0);
    EXPECT_EQ(online["nid"], 1) << online.dump();
    EXPECT_EQ(online["nr_pages"], kBlockPages) << "from online_pages(pfn, nr_pages, ...): " << online.dump();
    EXPECT_EQ(online["zone"], "Movable") << "from the online type: " << online.dump();
    const auto offline = of_phase(ops, "offline")[0];
    EXPECT_EQ(offline["ret"], 0);
    EXPECT_EQ(offline["nr_pages"], kBlockPages) << "from offline_pages(start_pfn, nr_pages): " << offline.dump();
    const auto remove = of_phase(ops, "remove")[0];
    EXPECT_EQ(remove["ret"], 0) << remove.dump();
    EXPECT_EQ(remove["nr_pages"], kBlockPages) << remove.dump();
    EXPECT_EQ(remove["memmap"]["altmap_pages"], 0) << remove.dump();
    EXPECT_EQ(remove["memmap"]["buddy_pages"], kMemmapPages) << "the order-9 block goes back: " << remove.dump();
    EXPECT_NE(raw.find("live: hot-plugged 0 B, memmap 0 B"), std::string::npos) << "gauges back to zero:\n" << raw;
    EXPECT_FALSE(mem_->snapshot().kernel_memmap_pages) << "nr_memmap_pages arrived in 6.11";
    EXPECT_FALSE(add.contains("kernel_memmap_pages")) << add.dump();
    EXPECT_EQ(raw.find("kernel memmap:"), std::string::npos) << raw;
}

// Refused before QEMU starts, as `memhp lab` reports it to a user: exit 2.
TEST_F(Kernel510, MemmapOnMemoryOnIsRefusedBeforeBoot) {
    try {
        auto g = lab::Guest::start(config("5.10", true), {});
        FAIL() << "a 5.10 guest started with memmap_on_memory=on";
    } catch (const UsageError& e) {
        EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("CONFIG_MHP_MEMMAP_ON_MEMORY")) << e.what();
    }
    auto r = run({memhp_path(), "lab", "--kernel", "5.10", "--memmap-on-memory", "on", "--cycles", "1"},
                 {.timeout = std::chrono::minutes(2)});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("built without CONFIG_MHP_MEMMAP_ON_MEMORY"), std::string::npos) << r.err;
}

template <typename Derived>
class Kernel72Suite : public GuestSuite<Derived> {
protected:
    using B = GuestSuite<Derived>;
    // The kernel's nr_memmap_pages rises by memhp's altmap + page-allocator
    // memmap pages at the add and is back at its start after the remove.
    static void CheckKernelCounter(const lab::CycleRecord& c, const std::vector<json>& ops, const std::string& raw) {
        const json add = of_phase(ops, "add").at(0);
        ASSERT_TRUE(c.before.kernel_memmap_pages) << "7.2 has nr_memmap_pages in /proc/vmstat";
        const auto start = *c.before.kernel_memmap_pages;
        const auto after_add = c.phase("add")->after.kernel_memmap_pages.value_or(0);
        const auto memhp_pages =
            add["memmap"]["altmap_pages"].get<std::uint64_t>() + add["memmap"]["buddy_pages"].get<std::uint64_t>();
        std::cout << "[kernel " << B::guest_->release() << "] nr_memmap_pages +" << (after_add - start)
                  << " at the add, memhp " << memhp_pages << std::endl;
        EXPECT_EQ(after_add - start, memhp_pages) << add.dump();
        EXPECT_EQ(c.phase("remove")->after.kernel_memmap_pages, start);
        // The same from inside the kernel, in memhp trace's own records.
        ASSERT_TRUE(add.contains("kernel_memmap_pages")) << add.dump();
        EXPECT_EQ(add["kernel_memmap_pages"]["before"], start) << add.dump();
        EXPECT_EQ(add["kernel_memmap_pages"]["delta"], memhp_pages) << add.dump();
        EXPECT_EQ(add["kernel_memmap_pages"]["matches"], true) << add.dump();
        const json remove = of_phase(ops, "remove").at(0);
        ASSERT_TRUE(remove.contains("kernel_memmap_pages")) << remove.dump();
        EXPECT_EQ(remove["kernel_memmap_pages"]["delta"], -static_cast<std::int64_t>(memhp_pages)) << remove.dump();
        EXPECT_EQ(remove["kernel_memmap_pages"]["after"], start) << remove.dump();
        EXPECT_EQ(remove["kernel_memmap_pages"]["matches"], true) << remove.dump();
        EXPECT_NE(
            raw.find("kernel memmap: nr_memmap_pages " + std::to_string(start) + " after the last add/remove; 0 "),
            std::string::npos)
            << raw;
    }
    static void CheckRelease() {
        EXPECT_TRUE(B::guest_->release().starts_with("7.2.")) << B::guest_->release();
        EXPECT_EQ(B::guest_->kernel().suite, "sid");
        // The split packaging, seen through the classic paths the cache adds.
        EXPECT_TRUE(fs::is_symlink(B::guest_->kernel().vmlinuz)) << B::guest_->kernel().vmlinuz;
        EXPECT_EQ(lab::kernel_config_has(B::guest_->kernel(), "MHP_MEMMAP_ON_MEMORY"), true);
    }
};

class Kernel72On : public Kernel72Suite<Kernel72On> {
public:
    static lab::GuestConfig Config() { return config("7.2", true); }
};
class Kernel72Off : public Kernel72Suite<Kernel72Off> {
public:
    static lab::GuestConfig Config() { return config("7.2", false); }
};

TEST_F(Kernel72On, AltmapMemmapIsLocalAndPopulateIsTimedDirectly) {
    CheckRelease();
    EXPECT_EQ(mem_->memmap_on_memory_param(), "Y");
    std::string raw;
    lab::CycleRecord c;
    auto ops = traced_cycle(*guest_, *mem_, &raw, &c);
    check_one_block_cycle(ops, raw);
    CheckKernelCounter(c, ops, raw);
    auto [attached, total] = attached_of(raw);
    EXPECT_EQ(attached, total) << "every probe attaches on 7.2:\n" << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "altmap") << add.dump();
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages) << add.dump();
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0) << add.dump();
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages);
    ASSERT_GE(of_phase(ops, "populate").size(), 1u) << raw;
    for (const auto& p : of_phase(ops, "populate")) EXPECT_EQ(p["direct"], true) << p.dump();
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], kMemmapPages);
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["altmap_pages"], kMemmapPages);
}

TEST_F(Kernel72Off, PageAllocatorMemmapIsRemote) {
    CheckRelease();
    EXPECT_EQ(mem_->memmap_on_memory_param(), "N");
    std::string raw;
    lab::CycleRecord c;
    auto ops = traced_cycle(*guest_, *mem_, &raw, &c);
    check_one_block_cycle(ops, raw);
    CheckKernelCounter(c, ops, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "page_allocator") << add.dump();
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], kMemmapPages) << add.dump();
    EXPECT_EQ(add["memmap"]["remote_pages"], kMemmapPages) << add.dump();
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["buddy_pages"], kMemmapPages);
}

}  // namespace
}  // namespace memhp::vmtest
