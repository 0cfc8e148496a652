// SPDX-License-Identifier: Apache-2.0
// memhp ab --gate end to end, as CI runs it: real guests, several boots per
// arm. One run carries an A/A pair and a known-slow arm (init_on_free=1
// zeroes every page the online frees to the page allocator: under TCG the
// online of a 128 MiB block takes about 35 times as long, measured here);
// another runs an A/A pair while a CPU hog starts on the host half-way.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string memhp_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

std::vector<std::string> gated(const fs::path& out, std::vector<std::string> arms) {
    std::vector<std::string> a = {memhp_bin(),       "ab", "--gate",     "--boots", "3",         "--cycles", "6",
                                  "--fallback-size", "0",  "--no-plots", "--out",   out.string()};
    for (auto& arm : arms) {
        a.push_back("--arm");
        a.push_back(arm);
    }
    return a;
}

TEST(AbGate, KnownSlowArmIsARegressionAndTheAAPairIsNot) {
    memhp::TempDir dir("memhp-gate-vm");
    const auto out = dir.path() / "out";
    std::cerr << "running memhp ab --gate --boots 3 with arms a, a2 (same as a) and slow (init_on_free=1)..."
              << std::endl;
    const auto r = memhp::run(gated(out, {"a:mmo=off", "a2:mmo=off", "slow:mmo=off,append=init_on_free=1"}),
                              {.timeout = std::chrono::minutes(15)});
    std::cerr << r.err.substr(r.err.size() > 4000 ? r.err.size() - 4000 : 0) << std::endl;
    // The gate judges the last arm against the first.
    ASSERT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("gate: regression: probe_online_s is worse"), std::string::npos) << r.err;
    const auto results = json::parse(memhp::read_file(out / "results.json"));
    EXPECT_EQ(results["status"], "complete");
    EXPECT_EQ(results["options"]["boots"], 3);
    for (const auto& arm : results["arms"]) {
        ASSERT_EQ(arm["cycles"].size(), 6u) << arm["name"];
        ASSERT_EQ(arm["boots"].size(), 3u) << arm["name"];
        std::set<int> boots;
        for (const auto& c : arm["cycles"]) {
            boots.insert(c["boot"].get<int>());
            EXPECT_GT(c["reference_s"].get<double>(), 0) << c.dump();
        }
        EXPECT_EQ(boots, (std::set<int>{1, 2, 3})) << "every boot ran its share of the rounds";
    }
    const auto md = memhp::read_file(out / "summary.md");
    EXPECT_NE(md.find("## Gate: regression (exit 1)"), std::string::npos) << md;
    EXPECT_NE(md.find("| **probe_online_s** | worse | 3+3 |"), std::string::npos) << md;

    // The A/A pair of the same run, through memhp compare --gate.
    const auto aa = memhp::run(
        {memhp_bin(), "compare", "--gate", (out / "results.json").string(), "--base-arm", "a", "--cand-arm", "a2"});
    EXPECT_EQ(aa.exit_code, 0) << aa.out << aa.err;
    EXPECT_NE(aa.out.find("## Gate: no regression (exit 0)"), std::string::npos) << aa.out;
}

TEST(AbGateHostLoad, HostHogHalfWayIsNoRegression) {
    memhp::TempDir dir("memhp-gate-hog");
    const auto out = dir.path() / "out";
    auto child = memhp::ChildProcess::spawn(gated(out, {"a:mmo=on", "b:mmo=on"}), dir.path() / "ab.log");
    // Once half of the rounds ran, two busy loops (one per core) take the
    // host's CPU until the run ends.
    std::vector<memhp::ChildProcess> hogs;
    for (int i = 0; i < 9000 && child.running(); ++i) {  // up to 15 minutes
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (!hogs.empty()) continue;
        const auto text = memhp::try_read_file(out / "results.json");
        if (!text) continue;
        const auto j = json::parse(*text, nullptr, false);
        if (j.is_discarded() || j["arms"][1]["cycles"].size() < 3) continue;
        std::cerr << "half-way: starting two CPU hogs on the host" << std::endl;
        for (int k = 0; k < 2; ++k)
            hogs.push_back(
                memhp::ChildProcess::spawn({"/bin/sh", "-c", "while :; do :; done"}, dir.path() / "hog.log"));
    }
    ASSERT_TRUE(child.wait_for(std::chrono::seconds(60))) << "memhp ab did not finish";
    for (auto& h : hogs) h.terminate();
    const auto log = memhp::try_read_file(dir.path() / "ab.log").value_or("");
    EXPECT_FALSE(hogs.empty()) << "the run never got half-way:\n" << log;
    // 0 (no regression) or 3 (inconclusive: the host's speed changed); never
    // 1, and not 4: the run itself must survive the load.
    const int code = child.exit_code().value_or(-1);
    EXPECT_TRUE(code == 0 || code == 3) << "exit " << code << "\n" << log;
    const auto md = memhp::read_file(out / "summary.md");
    EXPECT_NE(md.find("Drift: the guests' reference workload"), std::string::npos) << md;
}

}  // namespace
