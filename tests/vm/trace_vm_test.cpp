// memhp trace in real guests: the exact page counts, sources and locality
// of the memmap for the scenarios in kernel-paths.md, checked end to end
// (BPF in the guest -> ring buffer -> aggregator -> NDJSON).
#include <signal.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "vm_support.hpp"

namespace memhp::vmtest {
namespace {

using nlohmann::json;
constexpr std::uint64_t kBlock = 128 * kMiB;
constexpr std::uint64_t kBlockPages = kBlock / 4096;  // 32768
constexpr std::uint64_t kMemmapPages = kBlockPages / 64;  // 512: 64-byte struct page per 4 KiB page

// Runs `memhp trace --json` in the guest around `body`, returns the
// operations it reported (and the raw output for messages).
template <typename Fn>
std::vector<json> traced(lab::Guest& g, Fn&& body, std::string* raw = nullptr) {
    auto& agent = g.agent();
    const std::string memhp = (lab::default_agent_path().parent_path() / "memhp").string();
    const std::string out = "/tmp/trace.out";
    const int pid = agent.spawn({memhp, "trace", "--json"}, out);
    std::string text;
    for (int i = 0; i < 600 && text.find("memhp: attached") == std::string::npos; ++i) {
        if (auto code = agent.wait(pid, std::chrono::milliseconds(100)))
            throw Error("memhp trace exited early (" + std::to_string(*code) + "):\n" + agent.try_read(out).value_or(""));
        text = agent.try_read(out).value_or("");
    }
    if (text.find("memhp: attached") == std::string::npos) throw Error("memhp trace never attached:\n" + text);
    body();
    agent.signal(pid, SIGINT);
    auto code = agent.wait(pid, std::chrono::seconds(60));
    text = agent.read(out);
    if (raw) *raw = text;
    if (!code || *code != 0) throw Error("memhp trace did not exit cleanly:\n" + text);
    std::vector<json> ops;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '{') ops.push_back(json::parse(line));
    return ops;
}

std::vector<json> of_phase(const std::vector<json>& ops, const std::string& phase) {
    std::vector<json> out;
    for (const auto& o : ops)
        if (o["phase"] == phase) out.push_back(o);
    return out;
}

template <typename Derived>
class TraceSuite : public GuestSuite<Derived> {
protected:
    using B = GuestSuite<Derived>;
    // One 128 MiB DIMM on memoryless node 1: add, online movable, offline, remove.
    static std::vector<json> OneBlockCycle(std::string* raw = nullptr) {
        return traced(
            *B::guest_,
            [] {
                auto c = lab::run_cycle(*B::mem_, {kBlock, 1, lab::Zone::Movable}, 1);
                if (!c.ok()) throw Error("cycle failed: " + lab::to_json(c).dump());
            },
            raw);
    }
    // Adds a DIMM of `size` on node 1 and removes it again, never onlined.
    static std::vector<json> AddAndRemove(std::uint64_t size, std::string* raw) {
        return traced(
            *B::guest_,
            [size] {
                auto d = B::mem_->add_dimm(size, 1);
                B::mem_->remove(d);
            },
            raw);
    }
    static void CheckCommon(const std::vector<json>& ops, const std::string& raw) {
        ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
        ASSERT_EQ(of_phase(ops, "online").size(), 1u) << raw;
        ASSERT_EQ(of_phase(ops, "offline").size(), 1u) << raw;
        ASSERT_EQ(of_phase(ops, "remove").size(), 1u) << raw;
        ASSERT_GE(of_phase(ops, "populate").size(), 1u) << raw;
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
};

class Trace61Off : public TraceSuite<Trace61Off> {
public:
    static lab::GuestConfig Config() { return config("6.1", false); }
};
class Trace61On : public TraceSuite<Trace61On> {
public:
    static lab::GuestConfig Config() { return config("6.1", true); }
};
class Trace612On : public TraceSuite<Trace612On> {
public:
    static lab::GuestConfig Config() { return config("6.12", true); }
};

TEST_F(Trace61Off, MemmapFromThePageAllocatorOnNodeZeroIsRemote) {
    std::string raw;
    auto ops = OneBlockCycle(&raw);
    CheckCommon(ops, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "page_allocator");
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], kMemmapPages) << "one order-9 block";
    EXPECT_EQ(add["memmap"]["remote_pages"], kMemmapPages) << "node 1 is memoryless: the memmap sits on node 0";
    EXPECT_EQ(add["memmap"]["local_pages"], 0);
    EXPECT_GE(add["memmap"]["pagetable_pages"].get<int>(), 1);
    EXPECT_GE(add["free_bytes_consumed"].get<std::uint64_t>(), kMemmapPages * 4096);
    EXPECT_EQ(add["memmap_on_memory_unused"], false) << "memmap_on_memory is off: nothing to flag";
    const auto remove = of_phase(ops, "remove")[0];
    EXPECT_EQ(remove["memmap"]["buddy_pages"], kMemmapPages) << "the order-9 block goes back";
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], 0);
}

TEST_F(Trace61On, MemmapCarvedFromTheAddedBlockIsLocal) {
    std::string raw;
    auto ops = OneBlockCycle(&raw);
    CheckCommon(ops, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "altmap");
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0) << "the page allocator supplies only page tables";
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["remote_pages"], 0);
    EXPECT_GE(add["memmap"]["pagetable_pages"].get<int>(), 1);
    EXPECT_LT(add["free_bytes_consumed"].get<std::uint64_t>(), kMemmapPages * 4096);
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], kMemmapPages);
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["altmap_pages"], kMemmapPages);
}

// 6.1 uses the altmap only when one add covers exactly one memory block: a
// 1 GiB DIMM silently falls back to the page allocator. memhp flags it.
TEST_F(Trace61On, MultiBlockAddFallbackIsFlagged) {
    std::string raw;
    auto ops = AddAndRemove(8 * kBlock, &raw);
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 8 * kMemmapPages);
    EXPECT_EQ(add["memmap_on_memory_unused"], true);
    EXPECT_NE(add["unused_reason"].get<std::string>().find("spans 8 memory blocks"), std::string::npos) << add.dump();
}

TEST_F(Trace612On, OneBlockCycleUsesAltmapAndPopulateIsTimedDirectly) {
    std::string raw;
    auto ops = OneBlockCycle(&raw);
    CheckCommon(ops, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0);
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages);
    for (const auto& p : of_phase(ops, "populate")) EXPECT_EQ(p["direct"], true) << p.dump();
}

// From 6.6 on every block of a multi-block add gets its own altmap.
TEST_F(Trace612On, OneGiBAddUsesAltmapForAllEightBlocks) {
    std::string raw;
    auto ops = AddAndRemove(8 * kBlock, &raw);
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], 8 * kMemmapPages);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0);
    EXPECT_EQ(add["memmap_on_memory_unused"], false);
    EXPECT_EQ(of_phase(ops, "populate").size(), 8u) << "vmemmap_populate once per 128 MiB block";
}

// An offline that cannot succeed (boot memory holding kernel data) is
// recorded with its errno, and tracing goes on.
TEST_F(Trace61Off, FailedOfflineIsRecordedWithErrno) {
    std::string raw;
    int guest_errno = 0;
    auto ops = traced(
        *guest_,
        [&] {
            try {
                guest_->agent().write("/sys/devices/system/memory/memory0/state", "offline");
            } catch (const lab::AgentError& e) {
                guest_errno = e.guest_errno();
            }
            auto c = lab::run_cycle(*mem_, {kBlock, 1, lab::Zone::Movable}, 1);  // still traced afterwards
            if (!c.ok()) throw Error("cycle after the failed offline failed");
        },
        &raw);
    ASSERT_NE(guest_errno, 0) << "offlining boot memory block 0 should fail";
    auto offlines = of_phase(ops, "offline");
    ASSERT_EQ(offlines.size(), 2u) << raw;
    EXPECT_EQ(offlines[0]["ret"], -guest_errno) << offlines[0].dump();
    EXPECT_GT(offlines[0]["duration_ns"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(offlines[1]["ret"], 0);
    EXPECT_EQ(of_phase(ops, "add").size(), 1u);
    EXPECT_NE(raw.find("failures: offline errno " + std::to_string(guest_errno)), std::string::npos) << raw;
}

}  // namespace
}  // namespace memhp::vmtest
