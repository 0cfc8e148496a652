// SPDX-License-Identifier: Apache-2.0
// memhp trace on the patched kernels (kernel-patches/6.1 and 7.2): the
// collector takes the memory_hotplug tracepoint path, and gives the page
// counts and locality the fentry path gives on the stock kernels
// (trace_vm_test.cpp has the same scenarios), with vmemmap population timed
// directly. The 6.1 and 7.2 suites run the same cases on their kernel, and
// differ where the kernels do (a 1 GiB add with memmap_on_memory). Each suite
// boots its patched kernel once; scripts/test.sh builds it first when its
// cache entry is missing.
#include <iostream>

#include "memhp/lab/guest_trace.hpp"
#include "trace_support.hpp"

namespace memhp::vmtest {
namespace {

template <typename Derived>
class PatchedSuite : public GuestSuite<Derived> {
protected:
    using B = GuestSuite<Derived>;
    static std::vector<json> OneBlockCycle(std::string* raw, const std::vector<std::string>& env = {}) {
        return traced_one_block_cycle(*B::guest_, *B::mem_, raw, env);
    }
    static std::vector<json> AddAndRemove(std::uint64_t size, std::string* raw) {
        return traced_add_and_remove(*B::guest_, *B::mem_, size, raw);
    }
    // The add's memmap classes came from the kernel's mhp_memmap_alloc
    // events, and the page events agree with them.
    static void CheckMemmapEvents(const json& add, std::uint64_t altmap, std::uint64_t buddy, std::uint64_t remote) {
        EXPECT_EQ(add["memmap_from"], "memmap_events") << add.dump();
        const json& m = add["memmap_events"];
        EXPECT_EQ(m["altmap_pages"], altmap) << add.dump();
        EXPECT_EQ(m["buddy_pages"], buddy) << add.dump();
        EXPECT_EQ(m["remote_pages"], remote) << add.dump();
        EXPECT_EQ(m["base_pages"], 0) << add.dump();
        EXPECT_EQ(m["failed_blocks"], 0) << add.dump();
        EXPECT_EQ(m["agree"], true) << add.dump();
    }
    // What every one-block cycle must show, on either path.
    static void CheckCycle(const std::vector<json>& ops, const std::string& raw) {
        for (const auto& o : ops) ::testing::Test::RecordProperty(o["phase"].get<std::string>(), o.dump());
        check_one_block_cycle(ops, raw);
        if (::testing::Test::HasFatalFailure()) return;
        EXPECT_EQ(of_phase(ops, "online")[0]["nr_pages"], kBlockPages);
        EXPECT_EQ(of_phase(ops, "offline")[0]["zone"], "Movable");
    }
    // The tracepoint path: one populate per 128 MiB section, timed at its
    // own begin/end events.
    static void CheckTracepointPath(const std::vector<json>& ops, const std::string& raw, std::size_t sections) {
        EXPECT_NE(raw.find("path: memory_hotplug tracepoints"), std::string::npos) << raw;
        EXPECT_NE(raw.find("tp_btf mhp_vmemmap_populate_end: attached"), std::string::npos) << raw;
        EXPECT_EQ(raw.find("fentry "), std::string::npos) << "no fentry program on this path:\n" << raw;
        const auto populates = of_phase(ops, "populate");
        ASSERT_EQ(populates.size(), sections) << raw;
        for (const auto& p : populates) {
            EXPECT_EQ(p["direct"], true) << p.dump();
            EXPECT_EQ(p["nid"], 1) << p.dump();
            EXPECT_EQ(p["ret"], 0) << p.dump();
            EXPECT_EQ(p["nr_pages"], kBlockPages) << p.dump();
            EXPECT_GT(p["duration_ns"].get<std::uint64_t>(), 0u) << p.dump();
            EXPECT_LT(p["duration_ns"].get<std::uint64_t>(),
                      of_phase(ops, "add")[0]["duration_ns"].get<std::uint64_t>())
                << "populate runs inside the add";
        }
    }
};

// The cases both kernels share; the TEST_Fs below run them per suite.
template <typename Derived>
class PatchedCases : public PatchedSuite<Derived> {
protected:
    using S = PatchedSuite<Derived>;
    using B = GuestSuite<Derived>;
    static void RemotePageAllocatorMemmap();
    static void FailedOfflineWithErrno();
    static void LocalAltmapMemmap();
    static void FentryPathAgrees();
};

class PatchedMemmapOff : public PatchedCases<PatchedMemmapOff> {
public:
    static lab::GuestConfig Config() { return config("patched", false); }
};
class PatchedMemmapOn : public PatchedCases<PatchedMemmapOn> {
public:
    static lab::GuestConfig Config() { return config("patched", true); }
};
class Patched72MemmapOff : public PatchedCases<Patched72MemmapOff> {
public:
    static lab::GuestConfig Config() { return config("patched-7.2", false); }
};
class Patched72MemmapOn : public PatchedCases<Patched72MemmapOn> {
public:
    static lab::GuestConfig Config() { return config("patched-7.2", true); }
};

template <typename Derived>
void PatchedCases<Derived>::RemotePageAllocatorMemmap() {
    std::string raw;
    const std::vector<json> ops = S::OneBlockCycle(&raw);
    S::CheckCycle(ops, raw);
    S::CheckTracepointPath(ops, raw, 1);
    const json add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["caller"], "add_memory") << "an ACPI DIMM: not driver-managed";
    S::CheckMemmapEvents(add, 0, kMemmapPages, kMemmapPages);
    EXPECT_EQ(add["mode"], "page_allocator");
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], kMemmapPages) << "one order-9 block";
    EXPECT_EQ(add["memmap"]["remote_pages"], kMemmapPages) << "node 1 is memoryless: the memmap sits on node 0";
    EXPECT_EQ(add["memmap"]["local_pages"], 0);
    EXPECT_GE(add["memmap"]["pagetable_pages"].template get<int>(), 1);
    EXPECT_GE(add["free_bytes_consumed"].template get<std::uint64_t>(), kMemmapPages * 4096);
    EXPECT_EQ(add["memmap_on_memory_unused"], false);
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["buddy_pages"], kMemmapPages) << "the order-9 block goes back";
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], 0);
    for (const auto& p : of_phase(ops, "populate")) EXPECT_EQ(p["mode"], "page_allocator") << p.dump();
}

// Offlining boot memory that holds kernel data fails; the mhp_offline_end
// event carries the errno.
template <typename Derived>
void PatchedCases<Derived>::FailedOfflineWithErrno() {
    std::string raw;
    int guest_errno = 0;
    const std::vector<json> ops = traced_with(
        *B::guest_, {},
        [&] {
            try {
                B::guest_->agent().write("/sys/devices/system/memory/memory0/state", "offline");
            } catch (const lab::AgentError& e) {
                guest_errno = e.guest_errno();
            }
        },
        &raw);
    ASSERT_NE(guest_errno, 0) << "offlining boot memory block 0 should fail";
    const std::vector<json> offlines = of_phase(ops, "offline");
    ASSERT_EQ(offlines.size(), 1u) << raw;
    EXPECT_EQ(offlines[0]["ret"], -guest_errno) << offlines[0].dump();
    EXPECT_EQ(offlines[0]["nid"], 0) << offlines[0].dump();
    EXPECT_EQ(offlines[0]["start_pfn"], 0) << offlines[0].dump();
}

template <typename Derived>
void PatchedCases<Derived>::LocalAltmapMemmap() {
    std::string raw;
    const std::vector<json> ops = S::OneBlockCycle(&raw);
    S::CheckCycle(ops, raw);
    S::CheckTracepointPath(ops, raw, 1);
    const json add = of_phase(ops, "add")[0];
    S::CheckMemmapEvents(add, kMemmapPages, 0, 0);
    EXPECT_EQ(add["mode"], "altmap");
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0) << "the page allocator supplies only page tables";
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["remote_pages"], 0);
    EXPECT_GE(add["memmap"]["pagetable_pages"].template get<int>(), 1);
    EXPECT_LT(add["free_bytes_consumed"].template get<std::uint64_t>(), kMemmapPages * 4096);
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], kMemmapPages);
    EXPECT_EQ(of_phase(ops, "offline")[0]["vmemmap_pages"], kMemmapPages);
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["altmap_pages"], kMemmapPages);
    for (const auto& p : of_phase(ops, "populate")) EXPECT_EQ(p["mode"], "altmap") << p.dump();
}

// The same cycle on the same kernel through the fentry path: the two paths
// agree on every page count.
template <typename Derived>
void PatchedCases<Derived>::FentryPathAgrees() {
    std::string tp_raw, fentry_raw;
    const std::vector<json> tp = S::OneBlockCycle(&tp_raw);
    const std::vector<json> fentry = S::OneBlockCycle(&fentry_raw, {"MEMHP_PROBES=fentry"});
    EXPECT_NE(fentry_raw.find("path: fentry/fexit"), std::string::npos) << fentry_raw;
    S::CheckCycle(fentry, fentry_raw);
    EXPECT_EQ(of_phase(tp, "add")[0]["memmap_from"], "memmap_events");
    EXPECT_EQ(of_phase(fentry, "add")[0]["memmap_from"], "page_events") << "the fentry path has no memmap events";
    for (const char* phase : {"add", "remove"}) {
        const json a = of_phase(tp, phase)[0], b = of_phase(fentry, phase)[0];
        for (const char* k : {"altmap_pages", "buddy_pages", "local_pages", "remote_pages"})
            EXPECT_EQ(a["memmap"][k], b["memmap"][k]) << phase << " " << k << "\n" << a.dump() << "\n" << b.dump();
        EXPECT_EQ(a["nid"], b["nid"]) << phase;
        EXPECT_EQ(a["mode"], b["mode"]) << phase;
    }
    for (const char* phase : {"online", "offline"}) {
        const json a = of_phase(tp, phase)[0], b = of_phase(fentry, phase)[0];
        for (const char* k : {"nid", "zone", "start_pfn", "nr_pages", "vmemmap_pages"})
            EXPECT_EQ(a[k], b[k]) << phase << " " << k << "\n" << a.dump() << "\n" << b.dump();
    }
}

TEST_F(PatchedMemmapOff, TracepointPathSeesARemotePageAllocatorMemmap) { RemotePageAllocatorMemmap(); }
TEST_F(PatchedMemmapOff, FailedOfflineIsRecordedWithErrno) { FailedOfflineWithErrno(); }
TEST_F(PatchedMemmapOn, TracepointPathSeesALocalAltmapMemmap) { LocalAltmapMemmap(); }
TEST_F(PatchedMemmapOn, FentryPathOnTheSameKernelAgrees) { FentryPathAgrees(); }
TEST_F(Patched72MemmapOff, TracepointPathSeesARemotePageAllocatorMemmap) { RemotePageAllocatorMemmap(); }
TEST_F(Patched72MemmapOff, FailedOfflineIsRecordedWithErrno) { FailedOfflineWithErrno(); }
TEST_F(Patched72MemmapOn, TracepointPathSeesALocalAltmapMemmap) { LocalAltmapMemmap(); }
TEST_F(Patched72MemmapOn, FentryPathOnTheSameKernelAgrees) { FentryPathAgrees(); }

// 7.2 (as every kernel since 6.8) gives each block of a multi-block add its
// own altmap: a 1 GiB DIMM gets 8 of 512 pages, one populate per block, all
// timed at their own events; mhp_add_memory_end/remove_end report the sum.
TEST_F(Patched72MemmapOn, OneGiBAddUsesEightPerBlockAltmaps) {
    std::string raw;
    auto ops = AddAndRemove(8 * kBlock, &raw);
    for (const auto& o : ops) RecordProperty(o["phase"].get<std::string>(), o.dump());
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    CheckTracepointPath(ops, raw, 8);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "altmap");
    EXPECT_EQ(add["memmap"]["altmap_pages"], 8 * kMemmapPages);
    CheckMemmapEvents(add, 8 * kMemmapPages, 0, 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0);
    EXPECT_EQ(add["memmap"]["local_pages"], 8 * kMemmapPages);
    EXPECT_EQ(add["memmap_on_memory_unused"], false);
    for (const auto& p : of_phase(ops, "populate")) EXPECT_EQ(p["mode"], "altmap") << p.dump();
    const auto remove = of_phase(ops, "remove")[0];
    EXPECT_EQ(remove["ret"], 0);
    EXPECT_EQ(remove["memmap"]["altmap_pages"], 8 * kMemmapPages);
}

// 6.1 uses the altmap only for single-block adds: a 1 GiB DIMM falls back
// to the page allocator, one memmap block per section, and memhp flags it.
TEST_F(PatchedMemmapOn, MultiBlockAddFallbackIsFlagged) {
    std::string raw;
    auto ops = AddAndRemove(8 * kBlock, &raw);
    for (const auto& o : ops) RecordProperty(o["phase"].get<std::string>(), o.dump());
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    CheckTracepointPath(ops, raw, 8);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 8 * kMemmapPages);
    EXPECT_EQ(add["memmap"]["remote_pages"], 8 * kMemmapPages);
    CheckMemmapEvents(add, 0, 8 * kMemmapPages, 8 * kMemmapPages);
    EXPECT_EQ(add["memmap_on_memory_unused"], true);
    EXPECT_NE(add["unused_reason"].get<std::string>().find("spans 8 memory blocks"), std::string::npos) << add.dump();
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["buddy_pages"], 8 * kMemmapPages);
}

}  // namespace
}  // namespace memhp::vmtest

// Auto-online on the tracepoint path. kernel-patches/0001 puts
// mhp_add_memory_end before add_memory_resource() onlines the blocks, so
// there the add phase ends first and its online follows on the same task: a
// sibling, not nested. The add's time is its own either way.
namespace memhp::vmtest {
namespace {

// Both series emit add end before add_memory_resource() hands the blocks to
// device_online(), so on the tracepoints the kernel's online follows its add
// as a top-level record, from the add's task.
void online_follows_its_add(lab::Guest& g, lab::MemoryLab& mem) {
    ASSERT_TRUE(g.kernel_onlines()) << g.online_policy();
    std::string raw;
    lab::CycleOptions opts{kBlock, 1, lab::Zone::Movable};
    opts.kernel_onlines = true;
    lab::CycleRecord c;
    const auto ops = traced_with(
        g, {}, [&] { c = lab::run_cycle(mem, opts, 1); }, &raw);
    ASSERT_TRUE(c.ok()) << lab::to_json(c).dump(2);
    EXPECT_EQ(c.online_by, "kernel");
    EXPECT_NE(raw.find("path: memory_hotplug tracepoints"), std::string::npos) << raw;
    check_one_block_cycle(ops, raw);
    if (::testing::Test::HasFatalFailure()) return;
    const auto add = of_phase(ops, "add")[0];
    const auto online = of_phase(ops, "online")[0];
    EXPECT_EQ(online["parent_op_id"], 0u) << raw;
    EXPECT_FALSE(online.contains("parent_phase"));
    EXPECT_EQ(add["nested_ops"], 0u);
    EXPECT_EQ(add["duration_ns"], add["inclusive_ns"]);
    EXPECT_EQ(online["tid"], add["tid"]) << "the kernel onlined it from the add's task";
    EXPECT_GT(online["ts_ns"].get<std::uint64_t>(), add["ts_ns"].get<std::uint64_t>());
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages);
    EXPECT_EQ(online["vmemmap_pages"], kMemmapPages);
}

// virtio-mem on the tracepoint path: 1 GiB plugged into memoryless node 1
// and unplugged again, with the kernel onlining (online_movable, so the
// driver can offline the blocks again). Every block is its own
// driver-managed add with a page-allocator memmap on node 0, whatever
// memmap_on_memory says, and one directly timed populate.
void virtio_mem_on_the_tracepoints(lab::Guest& g, lab::MemoryLab& mem) {
    constexpr std::size_t n = 8;
    g.agent().write("/sys/devices/system/memory/auto_online_blocks", "online_movable");
    const auto [plug, unplug, raw, ops] = traced_virtio_mem_plug(g, mem, n);
    EXPECT_EQ(plug.plugged, n * kBlock) << lab::to_json(plug).dump();
    EXPECT_EQ(plug.blocks_online, n);
    EXPECT_EQ(unplug.plugged, 0u) << lab::to_json(unplug).dump();
    EXPECT_NE(raw.find("path: memory_hotplug tracepoints"), std::string::npos) << raw;
    const auto adds = of_phase(ops, "add");
    ASSERT_EQ(adds.size(), n) << raw;
    std::uint64_t buddy = 0;
    for (const auto& a : adds) {
        EXPECT_EQ(a["caller"], "driver_managed") << a.dump();
        EXPECT_EQ(a["nr_pages"], kBlockPages) << a.dump();
        EXPECT_EQ(a["mode"], "page_allocator") << a.dump();
        EXPECT_EQ(a["memmap"]["altmap_pages"], 0u) << a.dump();
        EXPECT_EQ(a["memmap"]["remote_pages"], kMemmapPages) << a.dump();
        EXPECT_EQ(a["memmap_on_memory_unused"], true) << a.dump();
        EXPECT_EQ(a["memmap_from"], "memmap_events") << a.dump();
        EXPECT_EQ(a["memmap_events"]["remote_pages"], kMemmapPages) << a.dump();
        EXPECT_EQ(a["memmap_events"]["agree"], true) << a.dump();
        buddy += a["memmap"]["buddy_pages"].get<std::uint64_t>();
    }
    EXPECT_EQ(buddy, n * kMemmapPages) << raw;
    const auto populates = of_phase(ops, "populate");
    EXPECT_EQ(populates.size(), n) << raw;
    for (const auto& p : populates) EXPECT_EQ(p["direct"], true) << p.dump();
    EXPECT_EQ(of_phase(ops, "online").size(), n) << raw;
    EXPECT_EQ(of_phase(ops, "offline").size(), n) << raw;
    const auto removes = of_phase(ops, "remove");
    ASSERT_EQ(removes.size(), n) << raw;
    for (const auto& r : removes) {
        EXPECT_EQ(r["ret"], 0) << r.dump();
        EXPECT_EQ(r["memmap"]["buddy_pages"], kMemmapPages) << r.dump();
    }
    std::cerr << "[figures] virtio-mem on the tracepoints: " << adds.size() << " driver-managed adds, " << buddy
              << " page-allocator memmap pages\n";
}

class PatchedAutoOnline : public PatchedSuite<PatchedAutoOnline> {
public:
    static lab::GuestConfig Config() {
        auto cfg = config("patched", true);
        cfg.online = lab::OnlineMode::Auto;  // 6.1's offline policy becomes online_movable
        return cfg;
    }
};

TEST_F(PatchedAutoOnline, TheOnlineFollowsItsAddOnTheTracepoints) { online_follows_its_add(*guest_, *mem_); }

class Patched72AutoOnline : public PatchedSuite<Patched72AutoOnline> {
public:
    static lab::GuestConfig Config() {
        auto cfg = config("patched-7.2", true);
        cfg.online = lab::OnlineMode::Auto;
        cfg.virtio_mem.push_back({1, std::uint64_t{1} << 30, 0});
        return cfg;
    }
};

// Before the DIMM test: the plug needs node 1 still memoryless. (The 6.1
// lab config does not build virtio_mem; the 7.2 one builds it in.)
TEST_F(Patched72AutoOnline, VirtioMemBlocksAreDriverManagedAdds) { virtio_mem_on_the_tracepoints(*guest_, *mem_); }

TEST_F(Patched72AutoOnline, TheOnlineFollowsItsAddOnTheTracepoints) {
    // 7.2's default policy onlines into ZONE_NORMAL, where the cycle's
    // offline may fail (EBUSY); online_movable is still the kernel onlining.
    guest_->agent().write("/sys/devices/system/memory/auto_online_blocks", "online_movable");
    online_follows_its_add(*guest_, *mem_);
}

}  // namespace
}  // namespace memhp::vmtest
