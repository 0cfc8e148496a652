// SPDX-License-Identifier: Apache-2.0
// memhp ab --scenario end to end, as a user runs it (the real binary, real
// Debian 6.1 guests). What is asserted is what 6.1 did when checked by hand:
//   fragmented: with memmap_on_memory=0 the order-9 memmap allocation fails
//     ("vmemmap alloc failure: order:9") and the add succeeds with 512
//     order-0 memmap pages (vmemmap_populate_basepages), unless the
//     allocation's own reclaim freed a 2 MiB block; with =1 the add carves
//     its 512 memmap pages from the added memory.
//   pressure (52 MiB, 8 above the min watermark, 4 DIMMs): the classic adds
//     take their memmap from the little that is left; they succeeded every
//     time, but some runs saw the last one fall back to base pages with the
//     OOM killer taking the hog (and a shell) meanwhile; the altmap adds take
//     (almost) nothing. 46 MiB: the hog is OOM-killed before it gets there.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kMemmapPages = 512;  // per 128 MiB block

std::string memhp_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

struct AbRun {
    memhp::RunResult result;
    json results;
    std::string summary;
    fs::path out;
};

AbRun run_ab(const memhp::TempDir& dir, std::vector<std::string> args) {
    AbRun r;
    r.out = dir.path() / "out";
    args.insert(args.begin(), {memhp_bin(), "ab"});
    for (const auto* a : {"--no-plots", "--out"}) args.push_back(a);
    args.push_back(r.out.string());
    std::cerr << "running memhp ab";
    for (std::size_t i = 2; i < args.size(); ++i) std::cerr << " " << args[i];
    std::cerr << std::endl;
    r.result = memhp::run(args, {.timeout = std::chrono::minutes(14)});
    std::cerr << r.result.err << std::endl;
    if (auto text = memhp::try_read_file(r.out / "results.json")) r.results = json::parse(*text, nullptr, false);
    r.summary = memhp::try_read_file(r.out / "summary.md").value_or("");
    return r;
}

const json& arm(const json& results, const std::string& name) {
    for (const auto& a : results["arms"])
        if (a["name"] == name) return a;
    throw std::runtime_error("no arm " + name);
}

// True when the arm's hog was restarted after dying in a cycle.
bool st_restarted(const json& a) {
    for (const auto& st : a["scenario_steps"])
        if (st.value("restart", false)) return true;
    return false;
}

// The adds of an arm's cycles; only those at `margin` when it is not 0.
std::vector<json> adds_of(const json& a, std::uint64_t margin = 0) {
    std::vector<json> out;
    for (const auto& c : a["cycles"])
        if (!margin || c["scenario"].value("margin_bytes", std::uint64_t{0}) == margin)
            for (const auto& add : c["scenario"]["adds"]) out.push_back(add);
    return out;
}

void expect_schema_valid(const fs::path& results) {
    auto v = memhp::run({"/usr/bin/python3", "-m", "jsonschema", "-i", results.string(),
                         MEMHP_SOURCE_DIR "/docs/ab-results.schema.json"});
    EXPECT_EQ(v.exit_code, 0) << "results.json does not match docs/ab-results.schema.json:\n" << v.out << v.err;
}

// Two rounds of three single-block DIMMs per arm.
class AbScenarioFragmented : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::make_unique<memhp::TempDir>("memhp-scn-frag");
        run_ = run_ab(*dir_, {"--scenario", "fragmented", "--cycles", "2", "--dimms", "3"});
    }
    static void TearDownTestSuite() { dir_.reset(); }
    static inline std::unique_ptr<memhp::TempDir> dir_;
    static inline AbRun run_;
};

TEST_F(AbScenarioFragmented, RunsCleanlyAndTheResultsMatchTheirSchema) {
    ASSERT_EQ(run_.result.exit_code, 0) << run_.result.out << run_.result.err;
    ASSERT_TRUE(run_.results.is_object());
    EXPECT_EQ(run_.results["status"], "complete");
    EXPECT_EQ(run_.results["options"]["scenario"], "fragmented");
    expect_schema_valid(run_.out / "results.json");
}

TEST_F(AbScenarioFragmented, TheHogLeavesFreeMemoryButNoOrder9Block) {
    for (const char* name : {"page-alloc", "altmap"}) {
        const auto& steps = arm(run_.results, name)["scenario_steps"];
        ASSERT_FALSE(steps.empty()) << name;
        const auto& hog = steps[0]["hog"];
        ASSERT_TRUE(hog.is_object()) << steps.dump();
        // Free blocks of order >= 9 per zone. DMA32 (all of node 0 but its first 16 MiB) must
        // have none. ZONE_DMA at times keeps one: the hog's huge-page faults do not get it
        // (lowmem_reserve), while a memmap allocation can.
        const auto& high = hog["high_order_free_blocks_by_zone"];
        ASSERT_TRUE(high.contains("DMA32")) << hog.dump();
        EXPECT_EQ(high["DMA32"], 0u) << name << ": " << hog["buddyinfo"];
        EXPECT_LE(high.value("DMA", 0u), 1u) << name << ": " << hog["buddyinfo"];
        EXPECT_LE(hog["high_order_free_blocks"].get<std::uint64_t>(), 1u) << hog["buddyinfo"];
        EXPECT_GT(hog["mem_free_bytes"].get<std::uint64_t>(), 256 * kMiB)
            << "plenty of free memory, all of it scattered";
        EXPECT_EQ(hog["knobs"]["/proc/sys/vm/compact_unevictable_allowed"], "0");
    }
}

TEST_F(AbScenarioFragmented, ClassicMemmapFallsBackToBasePagesAltmapIsUntouched) {
    const auto off = adds_of(arm(run_.results, "page-alloc"));
    const auto on = adds_of(arm(run_.results, "altmap"));
    // A lost event is a lost memmap page: the counts below are exact only
    // with none. (The allocation's own reclaim once freed enough pages in
    // one burst to overrun the ring buffer: 477 of 512 base pages seen.)
    for (const char* name : {"page-alloc", "altmap"}) {
        const auto& g = arm(run_.results, name)["guest"];
        EXPECT_EQ(g.value("trace_dropped_events", -1), 0) << name << ": " << g.dump();
        EXPECT_EQ(g.value("trace_orphan_page_events", -1), 0) << name << ": " << g.dump();
    }
    ASSERT_EQ(off.size(), 6u);
    ASSERT_EQ(on.size(), 6u);
    int fell_back = 0;
    for (const auto& a : off) {
        ASSERT_TRUE(a.value("ok", false)) << "6.1 does not fail the add, it falls back: " << a.dump();
        EXPECT_EQ(a.value("oom_kills", -1), 0) << a.dump();
        // Every add must carry the probes' record (memmap split, base_pages);
        // a const operator[] on a missing key is undefined in a release build.
        ASSERT_TRUE(a.contains("memmap") && a.contains("base_pages")) << "no probe record for this add: " << a.dump();
        if (!a.at("base_pages").get<bool>()) {
            // The order-9 attempt (__GFP_RETRY_MAYFAIL) reclaims first; now
            // and then that frees a contiguous 2 MiB of page cache and the
            // PMD allocation succeeds after all (seen for later adds of a
            // cycle; the first add of each cycle fell back in every run).
            EXPECT_EQ(a["memmap"]["pmd_pages"], kMemmapPages) << a.dump();
            continue;
        }
        ++fell_back;
        // 512 order-0 struct-page pages; the call-site classifier also
        // counts the PTE page vmemmap_pmd_populate() takes for them (513).
        EXPECT_GE(a["memmap"]["base_pages"].get<std::uint64_t>(), kMemmapPages) << a.dump();
        EXPECT_LE(a["memmap"]["base_pages"].get<std::uint64_t>(), kMemmapPages + 1) << a.dump();
        EXPECT_EQ(a["memmap"]["pmd_pages"], 0) << a.dump();
    }
    // How many fall back varies from run to run: 2 of 8, 2 of 6 and 0 of 6
    // were seen with the same setup (no free order-9 block in DMA32 at the
    // start), as reclaim under the order-9 attempt sometimes frees a whole
    // 2 MiB. Each add is checked above; the count is a figure, not a claim.
    std::cerr << "[fragmented] classic adds whose memmap fell back to base pages: " << fell_back << " of " << off.size()
              << std::endl;
    for (const auto& a : on) {
        ASSERT_TRUE(a.value("ok", false)) << a.dump();
        ASSERT_TRUE(a.contains("memmap") && a.contains("base_pages")) << "no probe record for this add: " << a.dump();
        EXPECT_EQ(a.at("memmap").at("altmap_pages"), kMemmapPages) << a.dump();
        EXPECT_EQ(a.at("memmap").at("base_pages"), 0) << a.dump();
        EXPECT_FALSE(a.at("base_pages").get<bool>());
        EXPECT_LT(a["free_consumed_bytes"].get<std::uint64_t>(), 64 * 1024) << a.dump();
    }
    const auto& s = run_.results["scenario"]["arms"];
    EXPECT_EQ(s[0]["total"]["base_pages"], fell_back) << s.dump();
    EXPECT_EQ(s[1]["total"]["base_pages"], 0);
    EXPECT_NE(run_.summary.find("### Scenario: fragmented"), std::string::npos) << run_.summary;
    if (fell_back > 0) {
        EXPECT_NE(run_.summary.find("mapped the memmap with 4 KiB base pages"), std::string::npos) << run_.summary;
    }
}

// A margin 8 MiB above the min watermark (44 MiB in this guest), four
// single-block DIMMs per cycle; then 46 MiB, which the hog cannot hold: the
// OOM killer takes it on the way (by hand: twice out of two, both modes).
class AbScenarioPressure : public ::testing::Test {
protected:
    static constexpr std::uint64_t kMargin = 52 * kMiB;
    static constexpr std::uint64_t kTooLow = 46 * kMiB;
    static void SetUpTestSuite() {
        dir_ = std::make_unique<memhp::TempDir>("memhp-scn-press");
        run_ = run_ab(*dir_, {"--scenario", "pressure", "--margins", "52M,46M", "--cycles", "1", "--dimms", "4"});
    }
    static void TearDownTestSuite() { dir_.reset(); }
    static inline std::unique_ptr<memhp::TempDir> dir_;
    static inline AbRun run_;
};

TEST_F(AbScenarioPressure, RunsAndTheResultsMatchTheirSchema) {
    ASSERT_EQ(run_.result.exit_code, 0) << run_.result.out << run_.result.err;
    EXPECT_EQ(run_.results["status"], "complete");
    EXPECT_EQ(run_.results["options"]["margins_bytes"], json::array({kMargin, kTooLow}));
    expect_schema_valid(run_.out / "results.json");
}

TEST_F(AbScenarioPressure, TheHogHoldsNode0AtTheMargin) {
    for (const char* name : {"page-alloc", "altmap"}) {
        const auto& a = arm(run_.results, name);
        const auto& hog = a["scenario_steps"][0]["hog"];
        ASSERT_TRUE(hog.is_object()) << a["scenario_steps"].dump();
        const auto free = hog["mem_free_bytes"].get<std::uint64_t>();
        EXPECT_LE(free, kMargin + 2 * kMiB) << name << ": kswapd may still give a little back";
        EXPECT_GE(free + 4 * kMiB, kMargin) << name;
        for (const auto& c : a["cycles"])  // before the first add, reclaim may have given a little back
            EXPECT_LE(c["scenario"]["node0_free_before_bytes"].get<std::uint64_t>(), kMargin + 16 * kMiB) << name;
    }
}

TEST_F(AbScenarioPressure, ClassicAddsTakeFreeMemoryAltmapAddsDoNot) {
    const auto off = adds_of(arm(run_.results, "page-alloc"), kMargin);
    const auto on = adds_of(arm(run_.results, "altmap"), kMargin);
    ASSERT_EQ(off.size(), 4u);
    ASSERT_EQ(on.size(), 4u);
    std::uint64_t off_total = 0, on_total = 0;
    for (const auto& a : off) {
        off_total += a.value("free_consumed_bytes", std::uint64_t{0});
        if (!a.value("ok", false)) {  // a failure is a result: it must say why
            EXPECT_TRUE(a.contains("errno") || a.contains("error")) << a.dump();
            continue;
        }
        ASSERT_TRUE(a.contains("memmap") && a.contains("free_consumed_bytes")) << "no probe record: " << a.dump();
        // The memmap came from the page allocator, as a PMD or (when the
        // order-9 attempt failed) as base pages; direct reclaim in the same
        // task gives pages back, so the net taken was 0.8-2 MiB per add.
        const auto from_allocator =
            a["memmap"]["pmd_pages"].get<std::uint64_t>() + a["memmap"]["base_pages"].get<std::uint64_t>();
        EXPECT_GE(from_allocator, kMemmapPages) << a.dump();
        EXPECT_LE(from_allocator, kMemmapPages + 1) << a.dump() << " (base pages: + their PTE page)";
        EXPECT_GT(a["free_consumed_bytes"].get<std::uint64_t>(), 0u) << a.dump();
        if (a.value("oom_kills", 0) > 0) {
            EXPECT_FALSE(a["oom_victims"].empty()) << a.dump();
        }
    }
    for (const auto& a : on) {
        ASSERT_TRUE(a.value("ok", false)) << a.dump();
        ASSERT_TRUE(a.contains("memmap") && a.contains("free_consumed_bytes")) << "no probe record: " << a.dump();
        EXPECT_EQ(a.at("memmap").at("altmap_pages"), kMemmapPages);
        EXPECT_LT(a["free_consumed_bytes"].get<std::uint64_t>(), 64 * 1024) << a.dump();
        on_total += a["free_consumed_bytes"].get<std::uint64_t>();
    }
    EXPECT_GE(off_total, 4 * kMiB) << "four classic adds at the margin";
    EXPECT_LT(on_total, 256 * 1024);
    EXPECT_NE(run_.summary.find("### Scenario: pressure"), std::string::npos) << run_.summary;
    EXPECT_NE(run_.summary.find("With node 0's free memory locked down to each margin"), std::string::npos);
}

// 46 MiB is 2 MiB above the min watermark: in most runs the OOM killer takes
// the hog on its way there (recorded, the arm skips that margin); when it
// gets there, the adds run. Either way every OOM kill is recorded, the run
// goes on and ends cleanly.
TEST_F(AbScenarioPressure, SurvivesTheOomKiller) {
    ASSERT_EQ(run_.result.exit_code, 0) << run_.result.err;
    int oom_kills = 0;
    for (const auto& s : run_.results["scenario"]["arms"]) {
        const auto& a = arm(run_.results, s["name"]);
        EXPECT_FALSE(a.contains("error")) << a["error"];
        bool hog_killed = false;
        for (const auto& st : a["scenario_steps"])
            if (st.value("margin_bytes", std::uint64_t{0}) == kTooLow && st.contains("hog_error")) {
                EXPECT_NE(st["hog_error"].get<std::string>().find("exited (137"), std::string::npos) << st.dump();
                hog_killed = true;
                ++oom_kills;
            }
        const auto at46 = adds_of(a, kTooLow);
        if (hog_killed && !st_restarted(a)) {
            EXPECT_TRUE(at46.empty()) << s["name"] << ": skipped the margin it could not hold";
            EXPECT_EQ(s["unreachable_margins_bytes"], json::array({kTooLow})) << s.dump();
        } else {
            EXPECT_EQ(at46.size(), 4u) << s["name"];
        }
        for (const auto& add : adds_of(a)) oom_kills += add["oom_kills"].get<int>();
    }
    EXPECT_GE(oom_kills, 1) << "every run so far saw the OOM killer at 52M or 46M";
}

}  // namespace
