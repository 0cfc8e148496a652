// SPDX-License-Identifier: Apache-2.0
// The gate on results files (memhp ab --gate, memhp compare --gate): run
// status, boots as replicates, drift across rounds and across runs, and the
// binary's exit statuses for each verdict.
#include "memhp/ab/gate_results.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "memhp/ab/report.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace memhp::ab {
namespace {

using nlohmann::json;

struct Arm {
    std::string name;
    double slow = 1.0;  // every timing metric multiplied by this
};

// A complete run: `boots` boots of `per_boot` rounds; each boot shifts every
// metric by its own offset (a boot's layout), each cycle has 3 % noise. The
// reference workload takes 0.2 s, times `drift` in the second half.
json run_doc(std::uint64_t seed, const std::vector<Arm>& arms, int boots, int per_boot, double drift = 1.0) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> z(0, 1);
    json out = json::array();
    const int rounds = boots * per_boot;
    std::vector<json> cycles(arms.size(), json::array());
    for (int b = 1; b <= boots; ++b) {
        std::vector<double> offset;
        for (std::size_t i = 0; i < arms.size(); ++i) offset.push_back(std::exp(0.03 * z(rng)));
        for (int k = 0; k < per_boot; ++k) {
            const int round = (b - 1) * per_boot + k + 1;
            const double host = round > rounds / 2 ? drift : 1.0;
            for (std::size_t i = 0; i < arms.size(); ++i) {
                const double f = arms[i].slow * offset[i] * host;
                auto noisy = [&](double v) { return v * f * std::exp(0.03 * z(rng)); };
                json m = {{"probe_add_s", noisy(0.020)},     {"probe_online_s", noisy(0.010)},
                          {"probe_offline_s", noisy(0.050)}, {"probe_remove_s", noisy(0.008)},
                          {"free_consumed_bytes", 2 << 20},  {"memmap_remote_bytes", 0},
                          {"wall_add_s", noisy(0.300)}};
                cycles[i].push_back({{"round", round},
                                     {"boot", b},
                                     {"ok", true},
                                     {"metrics", m},
                                     {"reference_s", 0.2 * host * std::exp(0.01 * z(rng))}});
            }
        }
    }
    for (std::size_t i = 0; i < arms.size(); ++i)
        out.push_back({{"name", arms[i].name}, {"guest", {{"trace_dropped_events", 0}}}, {"cycles", cycles[i]}});
    return {{"schema", kResultsSchema},
            {"status", "complete"},
            {"options",
             {{"mode", "cycles"},
              {"dimm_bytes", 128 << 20},
              {"dimms", 1},
              {"node", 1},
              {"zone", "movable"},
              {"cycles", rounds},
              {"boots", boots}}},
            {"arms", out}};
}

TEST(GateRun, IdenticalArmsAreNoRegressionAndASlowerCandidateIsOne) {
    const auto aa = gate_run(run_doc(1, {{"a"}, {"b"}}, 4, 5), "a", "b");
    EXPECT_EQ(aa.status, GateStatus::NoRegression) << aa.reason;
    EXPECT_TRUE(aa.drift.checked);
    EXPECT_NEAR(aa.drift.change, 0, 0.05);

    const auto slow = gate_run(run_doc(2, {{"a"}, {"b", 1.4}}, 4, 5), "a", "b");
    EXPECT_EQ(slow.status, GateStatus::Regression) << slow.reason;
    EXPECT_NE(slow.reason.find("worse by +4"), std::string::npos) << slow.reason;
    // Faster is not a regression.
    EXPECT_EQ(gate_run(run_doc(3, {{"a", 1.4}, {"b"}}, 4, 5), "a", "b").status, GateStatus::NoRegression);
}

TEST(GateRun, OneBootPerArmCannotBeJudged) {
    const auto r = gate_run(run_doc(4, {{"a"}, {"b", 1.4}}, 1, 20), "a", "b");
    EXPECT_EQ(r.status, GateStatus::Inconclusive) << r.reason;
    EXPECT_NE(r.reason.find("boots"), std::string::npos) << r.reason;
}

TEST(GateRun, HostSlowingDownHalfWayIsNotARegression) {
    // Identical arms; the host runs the guests 60 % slower from the middle
    // of the run on. Interleaving hits both arms alike: no regression, and
    // the drift is measured.
    auto r = gate_run(run_doc(5, {{"a"}, {"b"}}, 4, 5, 1.6), "a", "b");
    EXPECT_TRUE(r.drift.checked);
    EXPECT_NEAR(r.drift.change, 0.6, 0.1);
    EXPECT_NE(r.status, GateStatus::Regression) << r.reason;
    // A real 30 % effect drowned in that drift is not confirmed; the verdict
    // on the metric says the data cannot decide and how many boots would.
    r = gate_run(run_doc(5, {{"a"}, {"b", 1.3}}, 4, 5, 1.6), "a", "b");
    EXPECT_NE(r.status, GateStatus::Regression) << r.reason;
    const auto online = std::find_if(r.metrics.begin(), r.metrics.end(),
                                     [](const GateMetricVerdict& v) { return v.name == "probe_online_s"; });
    ASSERT_NE(online, r.metrics.end());
    EXPECT_EQ(online->verdict, GateVerdict::Inconclusive);
    EXPECT_GT(online->boots_needed, 4u);
}

TEST(GateRun, ARunThatFailedIsNotJudged) {
    auto doc = run_doc(6, {{"a"}, {"b"}}, 4, 5);
    doc["status"] = "interrupted";
    EXPECT_EQ(gate_run(doc, "a", "b").status, GateStatus::RunFailed);
    doc["status"] = "complete";
    doc["arms"][1]["cycles"][3]["ok"] = false;
    auto r = gate_run(doc, "a", "b");
    EXPECT_EQ(r.status, GateStatus::RunFailed);
    EXPECT_NE(r.reason.find("1 cycle(s) failed"), std::string::npos) << r.reason;
    EXPECT_THROW((void)gate_run(doc, "a", "nope"), BadResults);
}

// A complete run whose tracer lost events (ring-buffer drops, orphan page
// events, aged-out stale ops, untraced ops, a boot without its summary) is
// Inconclusive, exit 3, naming what was lost -- even when its figures show a
// clear regression. Before, only drops were seen, and as RunFailed.
TEST(GateRun, LostEventsInEitherArmRefuseACleanVerdict) {
    const std::vector<std::pair<const char*, const char*>> losses = {
        {"trace_dropped_events", "12 events dropped (ring buffer full)"},
        {"trace_orphan_page_events", "12 orphan page events"},
        {"trace_stale_ops", "12 stale ops aged out"},
        {"trace_untraced_ops", "12 ops not traced"},
        {"trace_decode_errors", "12 records that did not decode"},
    };
    for (const auto& [key, words] : losses)
        for (int arm : {0, 1}) {
            auto doc = run_doc(6, {{"a"}, {"b", 1.4}}, 4, 5);
            ASSERT_EQ(gate_run(doc, "a", "b").status, GateStatus::Regression);
            doc["arms"][arm]["guest"][key] = 12;
            const auto r = gate_run(doc, "a", "b");
            EXPECT_EQ(r.status, GateStatus::Inconclusive) << key << ": " << r.reason;
            EXPECT_EQ(static_cast<int>(r.status), 3);
            EXPECT_NE(r.reason.find(words), std::string::npos) << r.reason;
            EXPECT_NE(r.reason.find(arm ? "arm 'b'" : "arm 'a'"), std::string::npos) << r.reason;
            // The same for one arm across two runs.
            const auto two = gate_runs(run_doc(6, {{"a"}, {"b"}}, 4, 5), doc, "a", arm ? "b" : "a");
            EXPECT_EQ(two.status, GateStatus::Inconclusive) << two.reason;
            EXPECT_NE(two.reason.find("candidate run"), std::string::npos) << two.reason;
        }
    auto doc = run_doc(6, {{"a"}, {"b"}}, 4, 5);
    doc["arms"][1]["guest"]["trace_summary_missing"] = true;
    const auto r = gate_run(doc, "a", "b");
    EXPECT_EQ(r.status, GateStatus::Inconclusive) << r.reason;
    EXPECT_NE(r.reason.find("losses unknown"), std::string::npos) << r.reason;
    // Zero counts are no loss.
    doc["arms"][1]["guest"] = {{"trace_dropped_events", 0}, {"trace_stale_ops", 0}, {"trace_orphan_page_events", 0}};
    EXPECT_EQ(gate_run(doc, "a", "b").status, GateStatus::NoRegression);
}

TEST(GateRun, HostileTypesReadAsAbsentNotAsACrash) {
    auto doc = run_doc(7, {{"a"}, {"b"}}, 4, 5);
    doc["arms"][0]["cycles"][0]["boot"] = "x";
    doc["arms"][0]["cycles"][1]["metrics"]["probe_add_s"] = "fast";
    doc["arms"][0]["cycles"][2]["reference_s"] = nullptr;
    doc["arms"][0]["guest"] = 5;
    EXPECT_NO_THROW((void)gate_run(doc, "a", "b"));
}

TEST(GateRun, WithoutProbesTheWallTimesDecide) {
    // probes=off in the candidate: only wall times are there to compare.
    auto doc = run_doc(20, {{"on"}, {"off", 1.4}}, 4, 5);
    for (auto& c : doc["arms"][1]["cycles"])
        for (const char* m : {"probe_add_s", "probe_online_s", "probe_offline_s", "probe_remove_s"})
            c["metrics"].erase(m);
    const auto r = gate_run(doc, "on", "off");
    EXPECT_EQ(r.status, GateStatus::Regression) << r.reason;
    EXPECT_NE(r.reason.find("wall_add_s"), std::string::npos) << r.reason;
}

TEST(GateRuns, TwoRunsSayTheyAreRunsAndDriftBetweenThemIsInconclusive) {
    const auto base = run_doc(8, {{"a"}}, 4, 5);
    const auto same = run_doc(9, {{"a"}}, 4, 5);
    auto r = gate_runs(base, same, "a", "a");
    EXPECT_EQ(r.status, GateStatus::NoRegression) << r.reason;
    EXPECT_NE(r.reason.find("two runs compared, not two arms"), std::string::npos) << r.reason;
    // The candidate run ran on a host 40 % slower: everything is 40 % slower,
    // the reference too.
    auto slow_host = run_doc(10, {{"a", 1.4}}, 4, 5);
    for (auto& c : slow_host["arms"][0]["cycles"]) c["reference_s"] = c["reference_s"].get<double>() * 1.4;
    r = gate_runs(base, slow_host, "a", "a");
    EXPECT_EQ(r.status, GateStatus::Inconclusive) << r.reason;
    // The same slowdown with a steady reference is a regression.
    EXPECT_EQ(gate_runs(base, run_doc(10, {{"a", 1.4}}, 4, 5), "a", "a").status, GateStatus::Regression);
}

TEST(GateMarkdown, NamesVerdictsErrorControlAndCalibration) {
    const GateOptions o;
    const auto r = gate_run(run_doc(11, {{"a"}, {"b", 1.4}}, 4, 5), "a", "b", o);
    auto md = gate_markdown(r, "a", "b", o, std::nullopt);
    EXPECT_NE(md.find("## Gate: regression (exit 1)"), std::string::npos) << md;
    EXPECT_NE(md.find("| **probe_online_s** | worse | 4+4 |"), std::string::npos) << md;
    EXPECT_NE(md.find("(Holm)"), std::string::npos) << md;
    // A metric with no better direction that changed is "differs", not a
    // verdict: the altmap carries the memmap where the page allocator does not.
    auto doc = run_doc(19, {{"a"}, {"b"}}, 4, 5);
    for (auto& c : doc["arms"][1]["cycles"]) c["metrics"]["memmap_altmap_bytes"] = 2 << 20;
    for (auto& c : doc["arms"][0]["cycles"]) c["metrics"]["memmap_altmap_bytes"] = 0;
    const auto alt = gate_run(doc, "a", "b", o);
    EXPECT_EQ(alt.status, GateStatus::NoRegression) << alt.reason;
    md = gate_markdown(alt, "a", "b", o, std::nullopt);
    EXPECT_NE(md.find("| memmap_altmap_bytes | differs | 4+4 | inf | – |"), std::string::npos) << md;
    EXPECT_NE(md.find("memhp ab --aa 20"), std::string::npos) << md;
    Calibration c{"2026-12-02T12:00:00Z", "ci-runner", 20, 1, 2, 4, 20, "6.1"};
    md = gate_markdown(r, "a", "b", o, c);
    EXPECT_NE(md.find("gave 1 false alarm(s) in 20 runs (5.0 %)"), std::string::npos) << md;
}

TEST(GateCalibration, RoundTripsAndRejectsNonsense) {
    TempDir d("memhp-cal");
    const Calibration c{"2026-12-02T12:00:00Z", "h", 20, 1, 2, 4, 20, "6.1"};
    write_file(d.path() / "c.json", to_json(c).dump());
    const auto back = load_calibration(d.path() / "c.json");
    ASSERT_TRUE(back);
    EXPECT_EQ(back->runs, 20);
    EXPECT_EQ(back->false_alarms, 1);
    EXPECT_FALSE(load_calibration(d.path() / "missing.json"));
    auto bad = to_json(c);
    bad["false_alarms"] = 30;
    write_file(d.path() / "bad.json", bad.dump());
    EXPECT_THROW((void)load_calibration(d.path() / "bad.json"), BadResults);
    write_file(d.path() / "junk.json", "{\"schema\":");
    EXPECT_THROW((void)load_calibration(d.path() / "junk.json"), BadResults);
}

// The binary: one exit status per verdict, the same meaning as memhp ab --gate.
class GateCli : public ::testing::Test {
protected:
    TempDir dir_{"memhp-gate-cli"};
    std::string put(const std::string& name, const json& doc) {
        const auto p = dir_.path() / name;
        write_file(p, doc.dump());
        return p.string();
    }
    RunResult memhp(std::vector<std::string> args) {
        args.insert(args.begin(), (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "memhp").string());
        return run(args, {.timeout = std::chrono::seconds(20), .env = {"MEMHP_CACHE_DIR=" + dir_.path().string()}});
    }
};

TEST_F(GateCli, CompareGateExitStatuses) {
    auto r = memhp({"compare", "--gate", put("aa.json", run_doc(12, {{"a"}, {"b"}}, 4, 5))});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("## Gate: no regression (exit 0)"), std::string::npos) << r.out;
    r = memhp({"compare", "--gate", put("slow.json", run_doc(13, {{"a"}, {"b", 1.4}}, 4, 5))});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    r = memhp({"compare", "--gate", put("one.json", run_doc(14, {{"a"}, {"b", 1.4}}, 1, 20))});
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    auto failed = run_doc(15, {{"a"}, {"b"}}, 4, 5);
    failed["status"] = "failed";
    r = memhp({"compare", "--gate", put("failed.json", failed)});
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    auto lossy = run_doc(13, {{"a"}, {"b", 1.4}}, 4, 5);  // a regression, but the tracer lost events
    lossy["arms"][1]["guest"]["trace_stale_ops"] = 2;
    r = memhp({"compare", "--gate", put("lossy.json", lossy)});
    EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
    EXPECT_NE(r.out.find("## Gate: inconclusive (exit 3)"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("arm 'b': memhp's tracer lost events: 2 stale ops aged out"), std::string::npos) << r.out;
    write_file(dir_.path() / "junk.json", "not json");
    r = memhp({"compare", "--gate", (dir_.path() / "junk.json").string()});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    r = memhp({"compare", "--gate", put("single.json", run_doc(16, {{"a"}}, 4, 5))});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("one arm only"), std::string::npos) << r.err;
    r = memhp({"compare", "--gate", (dir_.path() / "aa.json").string(), "--metric", "probe_add_s"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST_F(GateCli, CompareGateOnTwoRunsAndAbGateNeedsBoots) {
    const auto a = put("a.json", run_doc(17, {{"x"}}, 4, 5));
    auto r = memhp({"compare", "--gate", a, put("b.json", run_doc(18, {{"x"}}, 4, 5))});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("two runs compared"), std::string::npos) << r.out;
    r = memhp({"ab", "--gate", "--boots", "1", "--out", (dir_.path() / "o").string()});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("--gate needs --boots 2"), std::string::npos) << r.err;
    r = memhp({"ab", "--boots", "30", "--cycles", "20", "--out", (dir_.path() / "o").string()});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    r = memhp({"ab", "--aa", "3", "--arm", "x:mmo=on", "--arm", "y:mmo=off", "--out", (dir_.path() / "o").string()});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("at most one --arm"), std::string::npos) << r.err;
}

// ---- calibration: spread and power -----------------------------------------

// run_doc's spread is known: boot offsets of 3 % and cycle noise of 3 %.
TEST(CalibrationSpread, RecoversTheBootAndCycleSpreadOfKnownData) {
    SpreadAccumulator acc;
    for (std::uint64_t seed = 1; seed <= 40; ++seed) acc.add(run_doc(seed, {{"a"}, {"b"}}, 4, 5));
    const auto spreads = acc.spreads();
    const auto it =
        std::find_if(spreads.begin(), spreads.end(), [](const auto& s) { return s.metric == "probe_online_s"; });
    ASSERT_NE(it, spreads.end());
    EXPECT_EQ(it->boot_medians, 40 * 2 * 4);
    EXPECT_EQ(it->cycles_per_boot, 5);
    EXPECT_NEAR(it->cycle_sd, 0.03, 0.004);
    // A boot median: the 3 % offset plus the noise of a median of 5 cycles.
    EXPECT_NEAR(it->boot_sd, std::sqrt(0.03 * 0.03 + 0.03 * 0.03 * 1.25 * 1.25 / 5), 0.006);
    const auto bytes =
        std::find_if(spreads.begin(), spreads.end(), [](const auto& s) { return s.metric == "free_consumed_bytes"; });
    ASSERT_NE(bytes, spreads.end());
    EXPECT_EQ(bytes->boot_sd, 0) << "a count that never moves";
}

TEST(CalibrationSpread, IgnoresFailedCyclesAndMalformedDocuments) {
    SpreadAccumulator acc;
    acc.add(json::object());
    acc.add(json{{"arms", "no"}});
    acc.add(json{{"arms", {{{"cycles", {{{"ok", false}, {"boot", 1}, {"metrics", {{"probe_add_s", 1.0}}}}}}}}}});
    EXPECT_TRUE(acc.spreads().empty());
}

TEST(CalibrationPower, MoreBootsOrCyclesDetectSmallerChanges) {
    MetricSpread s{"probe_online_s", 0.176, 0.276, 100, 5};  // measured on the 2-core build host
    const double at4 = detectable_ratio(s, 4, 5, 0.05, 6);
    const double at8 = detectable_ratio(s, 8, 5, 0.05, 6);
    const double at8x20 = detectable_ratio(s, 8, 20, 0.05, 6);
    EXPECT_GT(at4, at8);
    EXPECT_GT(at8, at8x20);
    EXPECT_GT(at4, 1.5) << "4 boots x 5 cycles cannot catch a 50 % change in 90 % of runs here";
    const auto n = boots_needed(s, 1.19, 5, 0.05, 6);
    ASSERT_TRUE(n);
    EXPECT_GE(detectable_ratio(s, *n - 1, 5, 0.05, 6), 1.19);
    EXPECT_LE(detectable_ratio(s, *n, 5, 0.05, 6), 1.19);
    EXPECT_LT(*boots_needed(s, 1.19, 20, 0.05, 6), *n) << "more cycles per boot need fewer boots";
    EXPECT_FALSE(boots_needed(s, 1.0, 5, 0.05, 6));
    EXPECT_FALSE(boots_needed(s, 1.001, 5, 0.05, 6, 0.9, 50));
}

// The model against the gate itself: simulated runs with run_doc's spread
// and a change of the predicted detectable size are caught about 90 % of
// the time (the model is approximate: 80-99 %).
TEST(CalibrationPower, ThePredictionMatchesTheGatesOwnDetectionRate) {
    SpreadAccumulator acc;
    for (std::uint64_t seed = 1; seed <= 40; ++seed) acc.add(run_doc(seed, {{"a"}, {"b"}}, 4, 5));
    const auto spreads = acc.spreads();
    const auto s =
        *std::find_if(spreads.begin(), spreads.end(), [](const auto& m) { return m.metric == "probe_online_s"; });
    const double ratio = detectable_ratio(s, 8, 5, 0.05, static_cast<int>(default_primary_metrics().size()));
    int caught = 0;
    constexpr int kRuns = 300;
    for (int i = 0; i < kRuns; ++i) {
        auto doc = run_doc(1000 + static_cast<std::uint64_t>(i), {{"a"}, {"b"}}, 8, 5);
        for (auto& c : doc["arms"][1]["cycles"])
            c["metrics"]["probe_online_s"] = c["metrics"]["probe_online_s"].get<double>() * ratio;
        caught += gate_run(doc, "a", "b").status == GateStatus::Regression;
    }
    std::cerr << "[figures] predicted 90 % power at +" << 100 * (ratio - 1) << " %; the gate caught " << caught << "/"
              << kRuns << "\n";
    EXPECT_GE(caught, kRuns * 80 / 100);
    EXPECT_LE(caught, kRuns * 99 / 100);
}

TEST_F(GateCli, CalibrationFileKeepsItsSpreadsAndRefusesBadOnes) {
    Calibration c;
    c.date = "2026-12-02T16:00:00Z";
    c.host = "h";
    c.kernel = "6.1";
    c.runs = 20;
    c.boots = 4;
    c.cycles = 20;
    c.spreads = {{"probe_online_s", 0.17, 0.27, 160, 5}};
    const auto path = dir_.path() / "cal.json";
    write_file(path, to_json(c).dump());
    const auto back = load_calibration(path);
    ASSERT_TRUE(back);
    ASSERT_EQ(back->spreads.size(), 1u);
    EXPECT_DOUBLE_EQ(back->spreads[0].boot_sd, 0.17);
    EXPECT_EQ(back->spreads[0].cycles_per_boot, 5);
    EXPECT_NE(power_sentence(*back, {}).find("probe_online_s +"), std::string::npos) << power_sentence(*back, {});
    auto j = to_json(c);
    j["spreads"][0]["metric"] = "no_such_metric";
    write_file(path, j.dump());
    EXPECT_THROW((void)load_calibration(path), BadResults);
    j = to_json(c);
    j["spreads"][0]["boot_sd"] = -1;
    write_file(path, j.dump());
    EXPECT_THROW((void)load_calibration(path), BadResults);
}

// An interrupted --aa resumes: finished runs in the output directory are
// reused (no guest boots here: both runs are there), one of other settings
// is refused.
TEST_F(GateCli, AaReusesFinishedRunsAndRefusesOtherSettings) {
    const auto top = dir_.path() / "aa";
    for (int i = 1; i <= 2; ++i) {
        std::filesystem::create_directories(top / ("aa-00" + std::to_string(i)));
        write_file(top / ("aa-00" + std::to_string(i)) / "results.json",
                   run_doc(50 + static_cast<std::uint64_t>(i), {{"page-alloc-a"}, {"page-alloc-b"}}, 4, 5).dump());
    }
    auto r = memhp({"ab", "--aa", "2", "--out", top.string()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.err.find("reusing the finished run"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find("0 false alarm(s) in 2 gated runs"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("probe_online_s"), std::string::npos) << "the power table:\n" << r.out;
    const auto cal = load_calibration(top / "calibration.json");
    ASSERT_TRUE(cal);
    EXPECT_FALSE(cal->spreads.empty());
    write_file(top / "aa-001" / "results.json", run_doc(50, {{"page-alloc-a"}, {"page-alloc-b"}}, 2, 10).dump());
    r = memhp({"ab", "--aa", "2", "--out", top.string()});
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("other settings"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace memhp::ab
