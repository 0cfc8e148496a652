// SPDX-License-Identifier: Apache-2.0
// memhp ab end to end, as a user runs it: the real binary boots real guests.
// A short default A/B (with the bpftrace peer check) checks the outputs, the
// exact page counts and the peer's agreement; a run
// whose guest is killed must keep what it measured and fail.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
constexpr std::uint64_t kMemmapBytes = 512 * 4096;  // per 128 MiB block

std::string memhp_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

void expect_nonempty_file(const fs::path& p, std::uintmax_t min_size = 200) {
    ASSERT_TRUE(fs::exists(p)) << p;
    EXPECT_GE(fs::file_size(p), min_size) << p;
}

// One short default run shared by the tests of the suite.
class AbEndToEnd : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::make_unique<memhp::TempDir>("memhp-ab-vm");
        const auto out = dir_->path() / "out";
        std::cerr << "running memhp ab --cycles 5 --peer bpftrace (three guests)..." << std::endl;
        result_ = memhp::run({memhp_bin(), "ab", "--cycles", "5", "--peer", "bpftrace", "--out", out.string()},
                             {.timeout = std::chrono::minutes(10)});
        std::cerr << result_.err << std::endl;
        if (auto text = memhp::try_read_file(out / "results.json")) results_ = json::parse(*text, nullptr, false);
    }
    static void TearDownTestSuite() { dir_.reset(); }
    static const json& arm(const std::string& name) {
        for (const auto& a : results_["arms"])
            if (a["name"] == name) return a;
        throw std::runtime_error("no arm " + name);
    }
    static fs::path out() { return dir_->path() / "out"; }
    static inline std::unique_ptr<memhp::TempDir> dir_;
    static inline memhp::RunResult result_;
    static inline json results_;
};

TEST_F(AbEndToEnd, RunsCleanlyAndTheResultsMatchTheirSchema) {
    ASSERT_EQ(result_.exit_code, 0) << result_.out << result_.err;
    ASSERT_TRUE(results_.is_object());
    EXPECT_EQ(results_["status"], "complete");
    auto v = memhp::run({"/usr/bin/python3", "-m", "jsonschema", "-i", (out() / "results.json").string(),
                         MEMHP_SOURCE_DIR "/docs/ab-results.schema.json"});
    EXPECT_EQ(v.exit_code, 0) << "results.json does not match docs/ab-results.schema.json:\n" << v.out << v.err;
}

TEST_F(AbEndToEnd, WritesSummaryAndPlots) {
    const auto md = memhp::read_file(out() / "summary.md");
    EXPECT_NE(md.find("### altmap vs page-alloc"), std::string::npos) << md;
    EXPECT_NE(md.find("| probe_add_s |"), std::string::npos) << md;
    EXPECT_NE(result_.out.find("### What hot-add costs"), std::string::npos) << "the summary is printed too";
    for (const char* plot : {"latency", "memmap", "free-memory"}) {
        expect_nonempty_file(out() / "plots" / (std::string(plot) + ".svg"), 2000);
        expect_nonempty_file(out() / "plots" / (std::string(plot) + ".png"), 2000);
    }
}

// A real run's results.json goes through the validating loader: memhp report
// renders it again and memhp compare of the file with itself finds no
// regression (exit 0, not 2).
TEST_F(AbEndToEnd, ReportAndCompareReadTheRealResults) {
    const auto results = (out() / "results.json").string();
    auto r = memhp::run({memhp_bin(), "report", results, "--out", (dir_->path() / "again").string()},
                        {.timeout = std::chrono::minutes(2)});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(memhp::read_file(dir_->path() / "again" / "summary.md").find("### altmap vs page-alloc"),
              std::string::npos);
    expect_nonempty_file(dir_->path() / "again" / "plots" / "latency.svg", 2000);
    r = memhp::run({memhp_bin(), "compare", results, results}, {.timeout = std::chrono::minutes(2)});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("No significant regression"), std::string::npos) << r.out;
}

TEST_F(AbEndToEnd, PageCountsPerArmAreExact) {
    const auto& off = arm("page-alloc");
    const auto& on = arm("altmap");
    ASSERT_EQ(off["cycles"].size(), 5u);
    ASSERT_EQ(on["cycles"].size(), 5u);
    EXPECT_EQ(off["guest"]["memmap_on_memory"], "N");
    EXPECT_EQ(on["guest"]["memmap_on_memory"], "Y");
    for (const auto& c : off["cycles"]) {
        ASSERT_TRUE(c["ok"].get<bool>()) << c.dump();
        EXPECT_EQ(c["metrics"]["memmap_page_allocator_bytes"], kMemmapBytes) << "one order-9 block from the buddy";
        EXPECT_EQ(c["metrics"]["memmap_remote_bytes"], kMemmapBytes) << "node 1 is memoryless";
        EXPECT_EQ(c["metrics"]["memmap_altmap_bytes"], 0);
        EXPECT_GE(c["metrics"]["free_consumed_bytes"].get<std::uint64_t>(), kMemmapBytes);
    }
    for (const auto& c : on["cycles"]) {
        ASSERT_TRUE(c["ok"].get<bool>()) << c.dump();
        EXPECT_EQ(c["metrics"]["memmap_altmap_bytes"], kMemmapBytes);
        EXPECT_EQ(c["metrics"]["memmap_page_allocator_bytes"], 0);
        EXPECT_EQ(c["metrics"]["memmap_remote_bytes"], 0);
        EXPECT_LT(c["metrics"]["free_consumed_bytes"].get<std::uint64_t>(), kMemmapBytes);
        EXPECT_EQ(c["metrics"]["node_memtotal_after_online_bytes"], (128u << 20) - kMemmapBytes)
            << "the altmap's pages are not memory";
    }
    // Interleaved: the arm that goes first alternates between rounds.
    EXPECT_NE(off["cycles"][0]["position"], off["cycles"][1]["position"]);
}

TEST_F(AbEndToEnd, MultiBlockFallbackOn61AndNotOn612) {
    ASSERT_EQ(results_["fallback_check"].size(), 2u) << results_["fallback_check"].dump();
    for (const auto& f : results_["fallback_check"]) {
        ASSERT_FALSE(f.contains("error")) << f.dump();
        if (f["guest"] == "altmap") {  // 6.1
            EXPECT_EQ(f["page_allocator_bytes"], 8 * kMemmapBytes);
            EXPECT_EQ(f["altmap_bytes"], 0);
            EXPECT_TRUE(f["unused"].get<bool>());
        } else {
            EXPECT_EQ(f["guest"], "fallback-6.12");
            EXPECT_EQ(f["altmap_bytes"], 8 * kMemmapBytes);
            EXPECT_EQ(f["page_allocator_bytes"], 0);
            EXPECT_FALSE(f["unused"].get<bool>());
        }
    }
}

TEST_F(AbEndToEnd, BpftraceTimesTheSamePhasesInTheSameCycles) {
    for (const char* name : {"page-alloc", "altmap"}) {
        const auto& g = arm(name)["guest"];
        ASSERT_TRUE(g.contains("peer")) << name << ": " << g.dump();
        EXPECT_GT(g["peer"]["attach_s"].get<double>(), 0);
        for (const auto& c : arm(name)["cycles"]) {
            // One record per function call: one block per DIMM, so one of each.
            std::map<std::string, int> n;
            for (const auto& o : c["peer_ops"]) ++n[o["phase"].get<std::string>()];
            EXPECT_EQ(n, (std::map<std::string, int>{{"add", 1}, {"offline", 1}, {"online", 1}, {"remove", 1}}))
                << c["peer_ops"].dump();
        }
        for (const char* phase : {"add", "online", "offline", "remove"}) {
            const auto& p = g["peer"]["phases"][phase];
            EXPECT_EQ(p["cycles"], 5) << name << " " << phase;
            EXPECT_EQ(p["unmatched"], 0) << name << " " << phase;
            // Two tools timing the same call from its entry to its return:
            // the same figure up to their probes' own cost (about 1 % here).
            // Far apart would mean they time different things.
            EXPECT_GT(p["ratio"].get<double>(), 0.5) << name << " " << phase << ": " << p.dump();
            EXPECT_LT(p["ratio"].get<double>(), 2.0) << name << " " << phase << ": " << p.dump();
        }
    }
    const auto md = memhp::read_file(out() / "summary.md");
    EXPECT_NE(md.find("### Peer check: memhp against bpftrace"), std::string::npos) << md;
}

// Kill the guest's QEMU after two cycles: the run stops, keeps the two
// cycles, records why, writes its summary, and exits non-zero.
TEST(AbKilled, GuestKilledMidRunKeepsWhatWasMeasured) {
    memhp::TempDir dir("memhp-ab-kill");
    const auto out = dir.path() / "out";
    auto child = memhp::ChildProcess::spawn({memhp_bin(), "ab", "--arm", "solo:mmo=on", "--cycles", "500",
                                             "--fallback-size", "0", "--no-plots", "--out", out.string()},
                                            dir.path() / "ab.log");
    json r;
    int qemu = -1;
    for (int i = 0; i < 1800 && child.running(); ++i) {  // up to 3 minutes
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        auto text = memhp::try_read_file(out / "results.json");
        if (!text) continue;
        r = json::parse(*text, nullptr, false);
        if (r.is_discarded() || r["arms"][0]["cycles"].size() < 2) continue;
        qemu = r["arms"][0]["guest"]["qemu_pid"];
        break;
    }
    ASSERT_GT(qemu, 0) << "the run never completed two cycles:\n"
                       << memhp::try_read_file(dir.path() / "ab.log").value_or("");
    ASSERT_EQ(::kill(qemu, SIGKILL), 0);
    ASSERT_TRUE(child.wait_for(std::chrono::seconds(120))) << "memhp ab hung after its guest died";
    const auto log = memhp::try_read_file(dir.path() / "ab.log").value_or("");
    EXPECT_EQ(child.exit_code(), 1) << log;
    r = json::parse(memhp::read_file(out / "results.json"));
    EXPECT_EQ(r["status"], "failed");
    const auto& cycles = r["arms"][0]["cycles"];
    ASSERT_GE(cycles.size(), 2u);
    EXPECT_TRUE(cycles[0]["ok"].get<bool>());
    EXPECT_EQ(cycles[0]["metrics"]["memmap_altmap_bytes"], kMemmapBytes) << "measured cycles are kept intact";
    EXPECT_TRUE(cycles.back()["guest_lost"].get<bool>()) << cycles.back().dump();
    EXPECT_NE(r["errors"].dump().find("QEMU exited"), std::string::npos) << r["errors"].dump();
    EXPECT_TRUE(fs::exists(out / "summary.md"));
    EXPECT_NE(log.find("QEMU exited"), std::string::npos) << log;
}

// A peer that does not attach in time (bpftrace needs seconds under TCG; it
// gets one) fails the run with a message that says what to do, not a hang.
TEST(AbKilled, PeerThatDoesNotAttachFailsTheRunAndSaysWhy) {
    memhp::TempDir dir("memhp-ab-peer");
    const auto out = dir.path() / "out";
    const auto r = memhp::run({memhp_bin(), "ab", "--arm", "solo:mmo=on", "--cycles", "1", "--fallback-size", "0",
                               "--no-plots", "--peer", "bpftrace", "--peer-timeout", "1", "--out", out.string()},
                              {.timeout = std::chrono::minutes(4)});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("--peer bpftrace: bpftrace did not attach its probes in the guest within 1 s"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("--peer-timeout"), std::string::npos) << r.err;
    const auto results = json::parse(memhp::read_file(out / "results.json"));
    EXPECT_EQ(results["status"], "failed");
    EXPECT_TRUE(results["arms"][0]["cycles"].empty());
    EXPECT_TRUE(fs::exists(out / "summary.md"));
}

}  // namespace
