// SPDX-License-Identifier: Apache-2.0
// The lab on real kernels: hot-plug a 128 MiB DIMM into memoryless node 1 and
// check what the guest's sysfs says, in both memmap modes.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "memhp/files.hpp"
#include "vm_support.hpp"

namespace memhp::vmtest {
namespace {

constexpr std::uint64_t kDimm = 128 * kMiB;

// Node 1's MemTotal after onlining one 128 MiB block: the whole block with the
// memmap elsewhere, or 2 MiB (512 pages of struct page) less when the memmap
// is carved out of the block itself (vmem_altmap).
constexpr std::uint64_t kFullBlockKb = 131072;
constexpr std::uint64_t kAltmapBlockKb = 129024;

template <typename Derived>
class CycleSuite : public GuestSuite<Derived> {
protected:
    using Base = GuestSuite<Derived>;
    // One full cycle, shared by the assertions of a suite: runs once.
    static const lab::CycleRecord& cycle() {
        static lab::CycleRecord rec = lab::run_cycle(*Base::mem_, {kDimm, 1, lab::Zone::Movable}, 1);
        return rec;
    }
    void ExpectCycle(const char* expected_param, std::uint64_t node1_total_kb) {
        EXPECT_EQ(Base::mem_->memmap_on_memory_param(), expected_param);
        EXPECT_EQ(Base::mem_->block_size(), kDimm);
        const auto& c = cycle();
        ASSERT_TRUE(c.ok()) << nlohmann::json(lab::to_json(c)).dump(2);
        ASSERT_EQ(c.dimms.at(0).blocks.size(), 1u);
        const auto* add = c.phase("add");
        const auto* online = c.phase("online");
        const auto* remove = c.phase("remove");
        ASSERT_TRUE(add && online && remove);
        EXPECT_EQ(add->after.blocks, c.before.blocks + 1) << "exactly one block appears";
        EXPECT_EQ(remove->after.blocks, c.before.blocks) << "and goes again after removal";
        EXPECT_EQ(online->after.node(1).total_kb, node1_total_kb);
        EXPECT_EQ(c.before.node(1).total_kb, 0u) << "node 1 starts memoryless";
        EXPECT_EQ(c.zone, "Movable");
        EXPECT_TRUE(c.device_deleted) << "QMP DEVICE_DELETED";
    }
};

class MemmapOff : public CycleSuite<MemmapOff> {
public:
    static lab::GuestConfig Config() { return config("6.1", false); }
};

class MemmapOn : public CycleSuite<MemmapOn> {
public:
    static lab::GuestConfig Config() { return config("6.1", true); }
};

TEST_F(MemmapOff, OneBlockCycleUsesPageAllocatorMemmap) { ExpectCycle("N", kFullBlockKb); }

TEST_F(MemmapOn, OneBlockCycleCarvesMemmapFromTheBlock) { ExpectCycle("Y", kAltmapBlockKb); }

// The BPF chain end to end: the skeleton built on the host loads in the
// guest, attaches to __add_pages and counts exactly the one 128 MiB add.
TEST_F(MemmapOff, AddCounterProbeSeesOneAddPagesCall) {
    auto& agent = guest_->agent();
    const std::string memhp = (lab::default_agent_path().parent_path() / "memhp").string();
    const std::string out = "/tmp/count-adds.out";
    const int pid = agent.spawn({memhp, "count-adds"}, out);
    // Wait until it reports being attached.
    std::string text;
    for (int i = 0; i < 600 && text.find("attached") == std::string::npos; ++i) {
        if (auto code = agent.wait(pid, std::chrono::milliseconds(100)))
            FAIL() << "count-adds exited early with " << *code << ":\n" << agent.try_read(out).value_or("");
        text = agent.try_read(out).value_or("");
    }
    ASSERT_NE(text.find("attached"), std::string::npos) << text;
    EXPECT_NE(text.find("(fentry)"), std::string::npos) << "fentry works on Debian 6.1: " << text;
    auto dimm = mem_->add_dimm(kDimm, 1);
    mem_->remove(dimm);  // never onlined: removal works straight away
    agent.signal(pid, SIGINT);
    auto code = agent.wait(pid, std::chrono::seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 0);
    text = agent.read(out);
    auto j = nlohmann::json::parse(text.substr(text.find('{')));
    EXPECT_EQ(j["calls"], 1);
    EXPECT_EQ(j["nr_pages"], kDimm / 4096);
}

// The guest sees what it runs of the host, nothing more (lab/src/shares.cpp):
// /usr, a staged /etc without secrets, the build's binaries. A kernel under
// test runs as root in there; the host's shadow file and source tree stay out.
TEST_F(MemmapOff, TheGuestSeesOnlyWhatItRunsOfTheHost) {
    auto& agent = guest_->agent();
    ASSERT_TRUE(std::filesystem::exists("/etc/shadow")) << "the host has the secret this test looks for";
    EXPECT_FALSE(agent.try_read("/etc/shadow").has_value()) << "the host's /etc/shadow reached the guest";
    const std::string source_file = MEMHP_SOURCE_DIR "/CMakeLists.txt";
    ASSERT_TRUE(std::filesystem::exists(source_file));
    EXPECT_FALSE(agent.try_read(source_file).has_value()) << "the host's source tree reached the guest";
    EXPECT_FALSE(agent.try_read("/proc/1/root/etc/shadow").has_value());
    // What the guest runs is there: the staged /etc, /usr through the
    // alternatives symlinks, the build's binaries.
    EXPECT_NE(agent.try_read("/etc/passwd").value_or("").find("root:"), std::string::npos);
    const auto bin = agent.listdir(lab::default_agent_path().parent_path().string());
    EXPECT_NE(std::find(bin.begin(), bin.end(), "memhp"), bin.end());
    const auto r = agent.exec({"/bin/sh", "-c", "awk 'BEGIN { print 6 * 7 }'"}, std::chrono::seconds(30));
    EXPECT_TRUE(r.ok()) << r.err;
    EXPECT_EQ(r.out, "42\n") << "awk through /etc/alternatives";
}

}  // namespace
}  // namespace memhp::vmtest
