// SPDX-License-Identifier: Apache-2.0
// memhp ab --scenario: the parsers, the per-add memmap split and the summary
// computed from crafted results.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "memhp/ab/scenario.hpp"
#include "memhp/error.hpp"
#include "memhp/process.hpp"
#include "memhp/procfs.hpp"

namespace {

using nlohmann::json;
using namespace memhp;

TEST(Buddyinfo, ParsesZonesAndCountsHighOrderBlocks) {
    const auto zones = memhp::parse_buddyinfo(
        "Node 0, zone      DMA      0      0      0      0      0      1      1      1      0      1      3 \n"
        "Node 0, zone    DMA32  88389     76     54     45     30     15      4      6      2      0      0 \n"
        "Node 1, zone  Movable      0      0      0      0      0      0      0      0      0     64      0 \n"
        "garbage line\n");
    ASSERT_EQ(zones.size(), 3u);
    EXPECT_EQ(zones[1].zone, "DMA32");
    EXPECT_EQ(zones[1].free[0], 88389u);
    EXPECT_EQ(zones[0].blocks_at_least(9), 4u);
    EXPECT_EQ(memhp::high_order_free_blocks(zones, 0, 9), 4u) << "DMA's order 9 and 10 blocks; DMA32 has none";
    EXPECT_EQ(memhp::high_order_free_blocks(zones, 1, 9), 64u);
    EXPECT_EQ(zones[0].free_pages(), 32u + 64 + 128 + 512 + 3 * 1024);
}

TEST(Zoneinfo, ReadsWatermarksPerZone) {
    const auto z = memhp::parse_zoneinfo(
        "Node 0, zone      DMA\n  per-node stats\n      nr_inactive_anon 5\n  pages free     3835\n"
        "        boost    0\n        min      190\n        low      237\n        high     284\n"
        "        spanned  4095\n        present  3998\n        managed  3840\n"
        "Node 0, zone    DMA32\n  pages free     100\n        min      11033\n        low      13791\n"
        "        high     16549\n        managed  224910\n");
    ASSERT_EQ(z.size(), 2u);
    EXPECT_EQ(z[0].min_pages, 190u);
    EXPECT_EQ(z[1].zone, "DMA32");
    EXPECT_EQ(z[1].low_pages, 13791u);
    EXPECT_EQ(z[1].high_pages, 16549u);
    EXPECT_EQ(z[1].managed_pages, 224910u);
}

TEST(Scenario, ParsesNamesAndMargins) {
    EXPECT_EQ(ab::parse_scenario("pressure"), ab::Scenario::Pressure);
    EXPECT_EQ(ab::parse_scenario("fragmented"), ab::Scenario::Fragmented);
    EXPECT_EQ(ab::parse_scenario(""), ab::Scenario::None);
    EXPECT_THROW((void)ab::parse_scenario("oom"), UsageError);
    EXPECT_EQ(ab::parse_margins("16M, 64M,32M,64M"), (std::vector<std::uint64_t>{64u << 20, 32u << 20, 16u << 20}))
        << "largest first, duplicates dropped";
    EXPECT_THROW((void)ab::parse_margins("64M,0"), UsageError);
    EXPECT_THROW((void)ab::parse_margins("lots"), UsageError);
}

json add_record(std::uint64_t altmap, std::uint64_t buddy, std::uint64_t pagetables) {
    return {{"phase", "add"},
            {"nr_pages", 32768},
            {"memmap", {{"altmap_pages", altmap}, {"buddy_pages", buddy}, {"pagetable_pages", pagetables}}}};
}

TEST(Scenario, SplitsTheMemmapByHowItWasMapped) {
    auto pmd = ab::split_add_memmap(add_record(0, 512, 1));
    EXPECT_EQ(pmd.expected, 512u);
    EXPECT_EQ(pmd.pmd, 512u);
    EXPECT_EQ(pmd.base_pages, 0u);
    // 6.1 on fragmented memory: no order-9 block, 512 order-0 memmap pages
    // plus their page table (what the probes counted in the lab).
    auto base = ab::split_add_memmap(add_record(0, 0, 516));
    EXPECT_EQ(base.pmd, 0u);
    EXPECT_EQ(base.base_pages, 512u);
    auto alt = ab::split_add_memmap(add_record(512, 0, 2));
    EXPECT_EQ(alt.altmap, 512u);
    EXPECT_EQ(alt.base_pages, 0u);
    // A collector that reports base pages itself is believed.
    auto j = add_record(0, 512, 4);
    j["memmap"]["base_pages"] = 512;
    auto own = ab::split_add_memmap(j);
    EXPECT_EQ(own.base_pages, 512u);
    EXPECT_EQ(own.pmd, 0u);
}

json crafted_results() {
    auto add = [](bool ok, bool base, int oom, std::uint64_t used) {
        json a{{"ok", ok}, {"base_pages", base}, {"oom_kills", oom}, {"free_consumed_bytes", used}};
        if (!ok) a["errno"] = 12;
        return a;
    };
    auto cycle = [](std::uint64_t margin, std::vector<json> adds) {
        return json{{"ok", true},
                    {"scenario", {{"margin_bytes", margin}, {"node0_free_before_bytes", margin}, {"adds", adds}}}};
    };
    const std::uint64_t M = 1 << 20;
    json off{{"name", "page-alloc"},
             {"guest", {{"memmap_on_memory", "N"}}},
             {"cycles",
              {cycle(64 * M, {add(true, false, 0, 2 * M), add(true, false, 0, 2 * M)}),
               cycle(48 * M, {add(true, true, 0, 2 * M), add(false, false, 1, 0)}),
               cycle(32 * M, {add(false, false, 0, 0), add(false, false, 0, 0)})}}};
    json on{{"name", "altmap"},
            {"guest", {{"memmap_on_memory", "Y"}}},
            {"cycles",
             {cycle(64 * M, {add(true, false, 0, 4096), add(true, false, 0, 4096)}),
              cycle(48 * M, {add(true, false, 0, 4096), add(true, false, 0, 4096)}),
              cycle(32 * M, {add(true, false, 0, 8192), add(true, false, 0, 4096)})}}};
    return {{"options", {{"scenario", "pressure"}}}, {"arms", {off, on}}};
}

TEST(Scenario, SummaryCountsOutcomesAndFindsTheFirstFailingMargin) {
    const auto s = ab::scenario_summary(crafted_results());
    ASSERT_EQ(s["arms"].size(), 2u);
    const auto& off = s["arms"][0];
    EXPECT_EQ(off["total"]["adds"], 6);
    EXPECT_EQ(off["total"]["succeeded"], 3);
    EXPECT_EQ(off["total"]["failed"], 3);
    EXPECT_EQ(off["total"]["base_pages"], 1);
    EXPECT_EQ(off["total"]["oom_kill"], 1);
    EXPECT_EQ(off["total"]["failed_by_errno"]["12"], 3);
    EXPECT_EQ(off["first_failing_margin_bytes"], 48u << 20);
    EXPECT_EQ(off["first_base_pages_margin_bytes"], 48u << 20);
    EXPECT_EQ(off["by_margin"][0]["margin_bytes"], 64u << 20) << "largest margin first";
    EXPECT_TRUE(s["arms"][1]["first_failing_margin_bytes"].is_null());
    const std::string v = s["verdict"];
    EXPECT_NE(v.find("page-alloc (memmap_on_memory=N) 3 of 6 adds succeeded"), std::string::npos) << v;
    EXPECT_NE(v.find("first failed at a margin of 48.00 MiB"), std::string::npos) << v;
    EXPECT_NE(v.find("altmap (memmap_on_memory=Y) 6 of 6 adds succeeded"), std::string::npos) << v;
    EXPECT_NE(v.find("never failed down to 32.00 MiB"), std::string::npos) << v;
    const auto md = ab::scenario_markdown(crafted_results());
    EXPECT_NE(md.find("### Scenario: pressure"), std::string::npos) << md;
    EXPECT_NE(md.find("| page-alloc | N | 48.00 MiB | 2 | 1 | 1 (1× ENOMEM) | 1 | 1 |"), std::string::npos) << md;
}

TEST(Scenario, NoScenarioNoSection) {
    json r{{"options", {{"mode", "cycles"}}}, {"arms", json::array()}};
    EXPECT_EQ(ab::scenario_markdown(r), "");
}

TEST(ScenarioCli, BadScenarioAndMarginsAreRejectedBeforeBoot) {
    const std::string memhp = (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "memhp").string();
    auto r = run({memhp, "ab", "--scenario", "oom", "--qemu", "/nonexistent"}, {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    r = run({memhp, "ab", "--scenario", "pressure", "--margins", "64M,0", "--qemu", "/nonexistent"},
            {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("--margins"), std::string::npos) << r.err;
    r = run({memhp, "ab", "--scenario", "pressure", "--scale", "--qemu", "/nonexistent"},
            {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    r = run({memhp, "ab", "--help"}, {.timeout = std::chrono::seconds(20)});
    EXPECT_NE(r.out.find("--scenario"), std::string::npos);
    EXPECT_NE(r.out.find("--margins"), std::string::npos);
}

}  // namespace
