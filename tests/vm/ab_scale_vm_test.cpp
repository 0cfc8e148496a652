// SPDX-License-Identifier: Apache-2.0
// memhp ab --scale --device virtio-mem as a user runs it: one 7.2 guest grows
// a virtio-mem device to 16 GiB in 128 MiB steps, onlining each before the
// next. Every step must be traced, each online's sub-phases must add up to
// the online's own time, and the analysis, the summary and the plots must be
// there.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
constexpr std::uint64_t kStep = std::uint64_t{128} << 20;
constexpr std::uint64_t kSize = std::uint64_t{16} << 30;

std::string memhp_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

class AbScaleVirtioMem : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::make_unique<memhp::TempDir>("memhp-ab-scale-vm");
        std::cerr << "running memhp ab --scale --device virtio-mem --scale-size 16G on 7.2..." << std::endl;
        result_ = memhp::run({memhp_bin(), "ab", "--scale", "--device", "virtio-mem", "--scale-size", "16G", "--arm",
                              "k72:kernel=7.2", "--out", out().string()},
                             {.timeout = std::chrono::minutes(12)});
        std::cerr << result_.err << std::endl;
        if (auto text = memhp::try_read_file(out() / "results.json")) results_ = json::parse(*text, nullptr, false);
    }
    static void TearDownTestSuite() { dir_.reset(); }
    static fs::path out() { return dir_->path() / "out"; }
    static const json& arm() { return results_["arms"][0]; }
    static inline std::unique_ptr<memhp::TempDir> dir_;
    static inline memhp::RunResult result_;
    static inline json results_;
};

TEST_F(AbScaleVirtioMem, EveryStepIsTracedAndOnline) {
    ASSERT_EQ(result_.exit_code, 0) << result_.out << result_.err;
    ASSERT_TRUE(results_.is_object());
    EXPECT_EQ(results_["status"], "complete");
    EXPECT_EQ(results_["options"]["scale_device"], "virtio-mem");
    auto v = memhp::run({"/usr/bin/python3", "-m", "jsonschema", "-i", (out() / "results.json").string(),
                         MEMHP_SOURCE_DIR "/docs/ab-results.schema.json"});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    // The boot memory was raised for the memmap: 1 GiB + 16 GiB/64 + tables.
    EXPECT_GE(arm()["scale_plan"]["boot_bytes"].get<std::uint64_t>(), (std::uint64_t{1} << 30) + kSize / 64);
    const auto& steps = arm()["scale"];
    ASSERT_EQ(steps.size(), kSize / kStep);
    for (const auto& s : steps) {
        SCOPED_TRACE(s.dump());
        ASSERT_TRUE(s["ok"].get<bool>());
        EXPECT_EQ(s["blocks"], 1);
        EXPECT_GT(s["probe_add_s"].get<double>(), 0) << "the step's add was traced";
        EXPECT_GT(s["probe_online_s"].get<double>(), 0) << "the step's online was traced";
        EXPECT_GT(s["e2e_s"].get<double>(), 0);
        EXPECT_GT(s["e2e_gib_s"].get<double>(), 0);
    }
    const auto& t = arm()["scale_total"];
    EXPECT_EQ(t["plugged_bytes"], kSize);
    EXPECT_GT(t["kernel_s"].get<double>(), 0);
    EXPECT_GT(t["e2e_s"].get<double>(), t["kernel_s"].get<double>() * 0.5);
}

// Each online's sub-phases add up to its own duration (within 10 %), and the
// functions on the online path are named among them.
TEST_F(AbScaleVirtioMem, SubPhasesOfEachOnlineAddUp) {
    ASSERT_TRUE(results_.is_object());
    std::size_t with_zone_span = 0;
    for (const auto& s : arm()["scale"]) {
        SCOPED_TRACE(s.dump());
        ASSERT_TRUE(s.contains("sub_phases_s"));
        ASSERT_GE(s["sub_phases_ops"].get<std::size_t>(), 2u) << "the add and its online";
        EXPECT_LE(s["sub_phases_worst_gap"].get<double>(), 0.10);
        const auto& on = s["sub_phases_s"]["online"];
        double sum = 0;
        for (const auto& [name, v] : on.items()) sum += v.get<double>();
        EXPECT_NEAR(sum, s["probe_online_s"].get<double>(), 0.10 * s["probe_online_s"].get<double>());
        for (const char* fn : {"online_pages", "move_pfn_range_to_zone", "set_zone_contiguous"})
            EXPECT_TRUE(on.contains(fn)) << fn << " was not timed";
        EXPECT_TRUE(s["sub_phases_s"]["add"].contains("arch_add_memory"));
        with_zone_span += s.value("zone_spanned_pages", std::uint64_t{0}) > 0;
    }
    EXPECT_GT(with_zone_span, arm()["scale"].size() / 2) << "move_pfn_range_to_zone's zone span";
}

TEST_F(AbScaleVirtioMem, AnalysisSummaryAndPlots) {
    ASSERT_TRUE(results_.is_object());
    const auto& an = arm()["scale_analysis"]["online"];
    ASSERT_TRUE(an.contains("exponent")) << an.dump();
    EXPECT_TRUE(std::isfinite(an["exponent"].get<double>()));
    ASSERT_FALSE(an["sub"].empty());
    const std::string named = an["sub"][0]["name"];
    EXPECT_NE(an["sentence"].get<std::string>().find(named), std::string::npos) << an.dump();
    const auto md = memhp::read_file(out() / "summary.md");
    EXPECT_NE(md.find("online cost grows as present^"), std::string::npos) << md;
    EXPECT_NE(md.find(named + "'s share"), std::string::npos) << md;
    EXPECT_NE(md.find("End to end, host to guest"), std::string::npos) << md;
    for (const char* plot : {"scale", "scale-cost", "scale-cumulative", "scale-shares-0"})
        for (const char* ext : {".svg", ".png"}) {
            const auto p = out() / "plots" / (std::string(plot) + ext);
            ASSERT_TRUE(fs::exists(p)) << p;
            EXPECT_GE(fs::file_size(p), 2000u) << p;
        }
}

}  // namespace
