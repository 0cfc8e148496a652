// SPDX-License-Identifier: Apache-2.0
// The scale curve's growth fit on synthetic curves with known exponents.
#include "memhp/ab/curve.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace memhp::ab;

namespace {

std::vector<CurveStep> curve(double exponent, double noise, std::uint64_t seed, std::size_t steps = 128) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> z(0, noise);
    std::vector<CurveStep> out;
    for (std::size_t i = 1; i <= steps; ++i) {
        CurveStep s;
        s.present_blocks = static_cast<double>(i);
        // A fixed part and a part that grows: the grower's share rises.
        const double fixed = 0.004 * std::exp(z(rng));
        const double grows = 0.0001 * std::pow(static_cast<double>(i), exponent) * std::exp(z(rng));
        s.sub_s["move_pfn_range_to_zone"] = grows;
        s.sub_s["online_pages_rest"] = fixed;
        s.cost_s = fixed + grows;
        out.push_back(std::move(s));
    }
    return out;
}

}  // namespace

TEST(Curve, RecoversALinearExponent) {
    std::vector<double> x, y;
    for (int i = 1; i <= 64; ++i) x.push_back(i), y.push_back(0.01 * i);
    const auto f = fit_growth(x, y);
    ASSERT_TRUE(f);
    EXPECT_NEAR(f->exponent, 1.0, 1e-9);
    EXPECT_NEAR(f->lo, 1.0, 1e-6) << "an exact line has a zero-width interval";
    EXPECT_NEAR(f->hi, 1.0, 1e-6);
}

TEST(Curve, RecoversAQuadraticExponentUnderNoise) {
    std::mt19937_64 rng(1);
    std::normal_distribution<double> z(0, 0.2);
    std::vector<double> x, y;
    for (int i = 1; i <= 256; ++i) x.push_back(i), y.push_back(1e-5 * i * i * std::exp(z(rng)));
    const auto f = fit_growth(x, y);
    ASSERT_TRUE(f);
    EXPECT_NEAR(f->exponent, 2.0, 0.1);
    EXPECT_LT(f->lo, f->exponent);
    EXPECT_GT(f->hi, f->exponent);
    EXPECT_LT(f->hi - f->lo, 0.2);
}

TEST(Curve, AFlatNoisyCurveHasAnExponentNearZeroAndHonestIntervals) {
    // 400 flat curves with 30 % noise: the exponent is near 0, and the 95 %
    // interval holds 0 in about 95 % of them.
    std::mt19937_64 rng(2);
    std::normal_distribution<double> z(0, 0.3);
    int covered = 0;
    constexpr int kCurves = 400;
    for (int c = 0; c < kCurves; ++c) {
        std::vector<double> x, y;
        for (int i = 1; i <= 128; ++i) x.push_back(i), y.push_back(0.02 * std::exp(z(rng)));
        const auto f = fit_growth(x, y);
        ASSERT_TRUE(f);
        EXPECT_NEAR(f->exponent, 0.0, 0.2);
        if (f->lo <= 0 && f->hi >= 0) ++covered;
    }
    std::printf("flat curves: the 95 %% interval held the true exponent in %d of %d\n", covered, kCurves);
    EXPECT_GE(covered, kCurves * 90 / 100);
    EXPECT_LE(covered, kCurves * 99 / 100);
}

TEST(Curve, TooFewPointsOrOnePresenceGiveNoFit) {
    EXPECT_FALSE(fit_growth({1, 2, 3}, {1, 2, 3}));
    EXPECT_FALSE(fit_growth({4, 4, 4, 4, 4}, {1, 2, 3, 4, 5}));
    EXPECT_FALSE(fit_growth({1, 2, 3, 4, 5}, {0, 0, -1, 0, 0})) << "non-positive costs are left out";
}

TEST(Curve, NamesTheSubPhaseWhoseShareGrows) {
    const auto a = analyse_curve("online", curve(1.0, 0.05, 3));
    ASSERT_TRUE(a.fit);
    ASSERT_EQ(a.sub.size(), 2u);
    EXPECT_EQ(a.sub.front().name, "move_pfn_range_to_zone");
    EXPECT_LT(a.sub.front().first, 0.2);
    EXPECT_GT(a.sub.front().last, 0.7);
    ASSERT_TRUE(a.sub.front().fit);
    EXPECT_NEAR(a.sub.front().fit->exponent, 1.0, 0.05);
    EXPECT_NE(a.sentence.find("online cost grows as present^"), std::string::npos) << a.sentence;
    EXPECT_NE(a.sentence.find("move_pfn_range_to_zone's share rises from"), std::string::npos) << a.sentence;
}

TEST(Curve, ScaleAnalysisOfAResultsArm) {
    // 32 steps of 128 MiB: add flat, online linear in the memory present.
    nlohmann::json steps = nlohmann::json::array();
    for (int i = 0; i < 32; ++i)
        steps.push_back({{"step", i + 1},
                         {"ok", true},
                         {"present_before_bytes", static_cast<std::uint64_t>(i) << 27},
                         {"probe_add_s", 0.020},
                         {"probe_populate_s", 0.005},
                         {"probe_online_s", 0.004 * (i + 1)}});
    steps.push_back({{"ok", true}, {"present_before_bytes", "lots"}, {"probe_online_s", 9.0}});  // hostile: left out
    steps.push_back({{"ok", false}, {"present_before_bytes", 0}, {"probe_online_s", 9.0}});      // failed: left out
    const auto an = scale_analysis({{"name", "a"}, {"scale", steps}}, 128u << 20);
    ASSERT_TRUE(an.contains("online") && an["online"].contains("exponent")) << an.dump();
    EXPECT_NEAR(an["online"]["exponent"].get<double>(), 1.0, 0.01);
    EXPECT_EQ(an["online"]["points"], 32);
    EXPECT_NEAR(an["add"]["exponent"].get<double>(), 0.0, 0.01);
    EXPECT_EQ(an["add"]["sub"][0]["name"], "populate");
    EXPECT_NEAR(an["add"]["sub"][0]["first_share"].get<double>(), 0.25, 1e-9);
    EXPECT_NE(an["online"]["sentence"].get<std::string>().find("online cost grows as present^1.00"), std::string::npos);
    EXPECT_TRUE(scale_analysis({{"name", "a"}}, 128u << 20).empty());
    EXPECT_TRUE(scale_analysis({{"name", "a"}, {"scale", 5}}, 128u << 20).empty());
}

// The probes' sub-phases (sub_phases_s) replace populate as the add's and
// give the online's: the one growing as present^1 inside a flat rest is
// named, with its own exponent.
TEST(Curve, ScaleAnalysisNamesTheGrowingSubPhaseWithItsExponent) {
    nlohmann::json steps = nlohmann::json::array();
    for (int i = 0; i < 64; ++i) {
        const double zone_walk = 0.0001 * (i + 1), rest = 0.003;
        steps.push_back({{"step", i + 1},
                         {"ok", true},
                         {"present_before_bytes", static_cast<std::uint64_t>(i) << 27},
                         {"probe_add_s", 0.010},
                         {"probe_populate_s", 0.004},
                         {"probe_online_s", zone_walk + rest},
                         {"sub_phases_s",
                          {{"add", {{"vmemmap_populate", 0.004}, {"other", 0.006}}},
                           {"online", {{"set_zone_contiguous", zone_walk}, {"online_pages", rest}, {"bad", "x"}}}}}});
    }
    const auto an = scale_analysis({{"name", "a"}, {"scale", steps}}, 128u << 20);
    ASSERT_TRUE(an["online"].contains("sub")) << an.dump();
    const auto& top = an["online"]["sub"][0];
    EXPECT_EQ(top["name"], "set_zone_contiguous");
    EXPECT_NEAR(top["exponent"].get<double>(), 1.0, 0.01);
    EXPECT_LT(top["first_share"].get<double>(), top["last_share"].get<double>());
    EXPECT_EQ(an["online"]["sub"].size(), 2u) << "a non-number is left out";
    EXPECT_NE(an["online"]["sentence"].get<std::string>().find("set_zone_contiguous's share rises"), std::string::npos);
    for (const auto& sub : an["add"]["sub"]) EXPECT_NE(sub["name"], "populate") << "sub-phases replace populate";
}
