// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/memory.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace memhp::lab {
namespace {

constexpr const char* kProcMeminfo = R"(MemTotal:        2014124 kB
MemFree:         1712348 kB
MemAvailable:    1780000 kB
Buffers:            2048 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
DirectMap1G:     1048576 kB
)";

constexpr const char* kNodeMeminfo = R"(Node 1 MemTotal:         131072 kB
Node 1 MemFree:          120512 kB
Node 1 MemUsed:           10560 kB
Node 1 HugePages_Total:     0
Node 1 HugePages_Free:      0
)";

TEST(ParseMeminfo, ProcMeminfo) {
    auto m = parse_meminfo(kProcMeminfo);
    EXPECT_EQ(m["MemTotal"], 2014124u);
    EXPECT_EQ(m["MemFree"], 1712348u);
    EXPECT_EQ(m["DirectMap1G"], 1048576u);
    ASSERT_TRUE(m.count("HugePages_Total"));  // unitless lines too
    EXPECT_EQ(m["HugePages_Total"], 0u);
    EXPECT_EQ(m.size(), 8u);
}

TEST(ParseMeminfo, NodeMeminfoDropsThePrefix) {
    auto m = parse_meminfo(kNodeMeminfo);
    EXPECT_EQ(m["MemTotal"], 131072u);
    EXPECT_EQ(m["MemFree"], 120512u);
    EXPECT_EQ(m["MemUsed"], 10560u);
    EXPECT_FALSE(m.count("Node"));
    EXPECT_EQ(m.size(), 5u);
}

TEST(ParseMeminfo, SkipsJunk) {
    auto m = parse_meminfo("\n  \nnot a field\nMemTotal: lots kB\nNoColon 5 kB\nMemFree: 7 kB");
    EXPECT_EQ(m.size(), 1u);
    EXPECT_EQ(m["MemFree"], 7u);
}

TEST(ParseMeminfo, ThisHostsProcMeminfo) {
    auto text = try_read_file("/proc/meminfo");
    if (!text) GTEST_SKIP() << "no /proc/meminfo";
    auto m = parse_meminfo(*text);
    EXPECT_GT(m["MemTotal"], 0u);
    EXPECT_LE(m["MemFree"], m["MemTotal"]);
}

TEST(ParseBlockName, Examples) {
    EXPECT_EQ(parse_block_name("memory0"), 0);
    EXPECT_EQ(parse_block_name("memory32"), 32);
    EXPECT_EQ(parse_block_name("memory1234"), 1234);
    for (const char* bad : {"memory", "memoryX", "memory3a", "memory-1", "block_size_bytes", "auto_online_blocks",
                            "power", "uevent", "Memory3", ""})
        EXPECT_EQ(parse_block_name(bad), -1) << bad;
}

TEST(Zone, ParseAndWords) {
    EXPECT_EQ(parse_zone("movable"), Zone::Movable);
    EXPECT_EQ(parse_zone("normal"), Zone::Normal);
    EXPECT_EQ(parse_zone("kernel"), Zone::Normal);
    EXPECT_EQ(parse_zone("auto"), Zone::Auto);
    EXPECT_EQ(zone_state_word(Zone::Movable), "online_movable");
    EXPECT_EQ(zone_state_word(Zone::Normal), "online_kernel");
    EXPECT_EQ(zone_state_word(Zone::Auto), "online");
    for (Zone z : {Zone::Movable, Zone::Normal, Zone::Auto}) EXPECT_EQ(parse_zone(zone_name(z)), z);
}

TEST(Zone, UnknownIsAUsageError) {
    for (const char* bad : {"", "Movable", "dma32", "online_movable"}) {
        try {
            (void)parse_zone(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), ::testing::HasSubstr(std::string("'") + bad + "'"));
        }
    }
}

TEST(MemorySnapshot, NodeDefaultsAndJson) {
    MemorySnapshot s;
    s.nodes[0] = {1048576, 900000};
    s.mem_total_kb = 1048576;
    s.blocks = 8;
    s.blocks_online = 7;
    EXPECT_EQ(s.node(0).total_kb, 1048576u);
    EXPECT_EQ(s.node(1).total_kb, 0u);  // absent node
    auto j = to_json(s);
    EXPECT_EQ(j["blocks"], 8);
    EXPECT_EQ(j["blocks_online"], 7);
    EXPECT_EQ(j["nodes"]["0"]["mem_free_kb"], 900000);
    EXPECT_FALSE(j["nodes"].contains("1"));
}

TEST(Dimm, Json) {
    Dimm d{"memhp-dimm0", "memhp-mem0", 1, 0x100000000ULL, 128ULL << 20, {32}};
    auto j = to_json(d);
    EXPECT_EQ(j["id"], "memhp-dimm0");
    EXPECT_EQ(j["node"], 1);
    EXPECT_EQ(j["addr"], 0x100000000ULL);
    EXPECT_EQ(j["size_bytes"], 128ULL << 20);
    EXPECT_EQ(j["blocks"], nlohmann::json({32}));
}

}  // namespace
}  // namespace memhp::lab

namespace memhp::lab {
namespace {
TEST(VmstatValue, ReadsTheKernelsMemmapCounter) {
    const std::string vmstat = "nr_free_pages 225280\nnr_memmap_pages 512\nnr_memmap_boot_pages 4096\n";
    EXPECT_EQ(vmstat_value(vmstat, "nr_memmap_pages"), 512u);
    EXPECT_EQ(vmstat_value(vmstat, "nr_memmap_boot_pages"), 4096u) << "not confused with the boot counter";
    EXPECT_EQ(vmstat_value("nr_free_pages 1\n", "nr_memmap_pages"), std::nullopt) << "kernels before 6.11";
    EXPECT_EQ(vmstat_value("nr_memmap_pages -3\n", "nr_memmap_pages"), std::nullopt);
    EXPECT_EQ(vmstat_value("nr_memmap_pages 99999999999999999999999\n", "nr_memmap_pages"), std::nullopt);
}
}  // namespace
}  // namespace memhp::lab
