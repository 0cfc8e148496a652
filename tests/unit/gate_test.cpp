// SPDX-License-Identifier: Apache-2.0
// The CI gate's error rates on synthetic runs drawn from known
// distributions: false alarms on A/A runs (per-boot offsets, per-boot layout
// effects, heavy tails, drift) and power for a documented effect.
#include "memhp/ab/gate.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace memhp::ab;

namespace {

// The shape of a default gated run: 15 lower-is-better metrics (as many as
// memhp ab has), the first 6 primary, 4 boots per arm, 5 cycles per boot
// (20 rounds); rounds interleave across all boots.
struct Shape {
    int metrics = 15;
    int primary = 6;
    int boots = 4;
    int cycles_per_boot = 5;
};

// The documented noise: 3 % between boots, 10 % between cycles (log scale).
struct Noise {
    double boot_sigma = 0.03;   // per-boot offset (log scale)
    double cycle_sigma = 0.10;  // per-cycle noise (log scale)
    double spike_p = 0;         // heavy tail: chance of a 3-10x outlier
    double drift = 0;           // relative change over the run, both arms
    double layout_p = 0;        // chance a boot doubles a byte metric for all its cycles
};

using Rng = std::mt19937_64;

// One run: metric 0 of the candidate is scaled by `effect`.
std::vector<GateMetricInput> simulate(Rng& rng, const Shape& s, const Noise& n, double effect = 1.0) {
    std::normal_distribution<double> z(0, 1);
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<GateMetricInput> out;
    const int rounds = s.boots * s.cycles_per_boot;
    for (int m = 0; m < s.metrics; ++m) {
        GateMetricInput in;
        in.name = "metric" + std::to_string(m);
        in.better = Better::Lower;
        in.primary = m < s.primary;
        // The last primary one behaves like bytes with a per-boot layout
        // (page tables: 4 KiB or 8 KiB per add, fixed for the whole boot).
        const bool bytes = m == s.primary - 1;
        in.timing = !bytes;
        for (int arm = 0; arm < 2; ++arm) {
            auto& dst = arm == 0 ? in.base : in.cand;
            for (int b = 0; b < s.boots; ++b) {
                const double boot_off = z(rng) * n.boot_sigma;
                const bool doubled = u(rng) < n.layout_p;
                for (int c = 0; c < s.cycles_per_boot; ++c) {
                    const int round = c * s.boots + b;  // interleaved
                    double v;
                    if (bytes) {
                        v = doubled ? 8192 : 4096;
                    } else {
                        v = 0.02 * std::exp(boot_off + z(rng) * n.cycle_sigma);
                        if (u(rng) < n.spike_p) v *= 3 + 7 * u(rng);
                        v *= 1 + n.drift * round / std::max(1, rounds - 1);
                        if (arm == 1 && m == 0) v *= effect;
                    }
                    dst.push_back({v, arm * 100 + b, round});
                }
            }
        }
        out.push_back(std::move(in));
    }
    return out;
}

double rate(const Shape& s, const Noise& n, double effect, GateStatus status, int runs, std::uint64_t seed) {
    Rng rng(seed);
    int hits = 0;
    for (int i = 0; i < runs; ++i)
        if (gate(simulate(rng, s, n, effect)).status == status) ++hits;
    return static_cast<double>(hits) / runs;
}

constexpr int kRuns = 1000;

}  // namespace

TEST(Gate, HolmAdjustsInStepDownOrder) {
    const auto a = holm_adjust({0.01, 0.04, 0.03, 0.5});
    EXPECT_DOUBLE_EQ(a[0], 0.04);  // 0.01 * 4
    EXPECT_DOUBLE_EQ(a[2], 0.09);  // 0.03 * 3
    EXPECT_DOUBLE_EQ(a[1], 0.09);  // 0.04 * 2 = 0.08, raised to stay monotone
    EXPECT_DOUBLE_EQ(a[3], 0.5);
}

TEST(Gate, BootMediansGroupByBoot) {
    const auto m = boot_medians({{1, 0, 0}, {3, 0, 1}, {2, 0, 2}, {10, 7, 0}, {20, 7, 1}});
    ASSERT_EQ(m.size(), 2u);
    EXPECT_DOUBLE_EQ(m[0], 2);
    EXPECT_DOUBLE_EQ(m[1], 15);
}

TEST(Gate, AaFalseAlarmRateWithPerBootOffsets) {
    const double fa = rate({}, {}, 1.0, GateStatus::Regression, kRuns, 1);
    const double unsure = rate({}, {}, 1.0, GateStatus::Inconclusive, kRuns, 1);
    std::printf("A/A, per-boot offsets: false-alarm rate %.1f %%, inconclusive %.1f %% over %d runs\n", fa * 100,
                unsure * 100, kRuns);
    EXPECT_LE(fa, 0.05);
    EXPECT_LE(unsure, 0.10) << "a gate that is unsure of identical arms this often gets switched off";
}

TEST(Gate, AaFalseAlarmRateWithPerBootLayoutEffects) {
    // A boot that needs twice the page tables for all its cycles: the effect
    // that one-boot-per-arm runs counted twenty times.
    Noise n;
    n.layout_p = 0.3;
    const double fa = rate({}, n, 1.0, GateStatus::Regression, kRuns, 2);
    std::printf("A/A, per-boot layout effect (p=0.3): false-alarm rate %.1f %%\n", fa * 100);
    EXPECT_LE(fa, 0.05);
}

TEST(Gate, AaFalseAlarmRateWithHeavyTails) {
    Noise n;
    n.spike_p = 0.08;
    const double fa = rate({}, n, 1.0, GateStatus::Regression, kRuns, 3);
    std::printf("A/A, 8 %% outliers of 3-10x: false-alarm rate %.1f %%\n", fa * 100);
    EXPECT_LE(fa, 0.05);
}

TEST(Gate, AaFalseAlarmRateWithDrift) {
    Noise n;
    n.drift = 0.5;  // the host gets 50 % slower over the run, for both arms
    const double fa = rate({}, n, 1.0, GateStatus::Regression, kRuns, 4);
    std::printf("A/A, 50 %% drift over the run: false-alarm rate %.1f %%\n", fa * 100);
    EXPECT_LE(fa, 0.05);
}

TEST(Gate, PowerForTheDocumentedEffect) {
    // The documented effect: one phase 35 % slower, at the default shape
    // (4 boots per arm, 5 cycles per boot: 20 rounds).
    const double power = rate({}, {}, 1.35, GateStatus::Regression, kRuns, 5);
    std::printf("a 35 %% slower phase: detected in %.1f %% of runs (4 boots x 5 cycles per arm)\n", power * 100);
    EXPECT_GE(power, 0.90);
}

TEST(Gate, ASmallerEffectNeedsMoreBoots) {
    Shape more;
    more.boots = 8;
    const double p4 = rate({}, {}, 1.15, GateStatus::Regression, 400, 6);
    const double p8 = rate(more, {}, 1.15, GateStatus::Regression, 400, 6);
    std::printf("a 15 %% slower phase: detected in %.1f %% (4 boots) vs %.1f %% (8 boots)\n", p4 * 100, p8 * 100);
    EXPECT_GT(p8, p4 + 0.1);
}

TEST(Gate, StatusesForEachVerdict) {
    Rng rng(7);
    const auto reg = gate(simulate(rng, {}, {}, 2.0));
    EXPECT_EQ(reg.status, GateStatus::Regression) << reg.reason;
    EXPECT_EQ(reg.metrics[0].verdict, GateVerdict::Worse);
    EXPECT_NE(reg.reason.find("metric0"), std::string::npos) << reg.reason;

    const auto better = gate(simulate(rng, {}, {}, 0.5));
    EXPECT_EQ(better.status, GateStatus::NoRegression) << better.reason;
    EXPECT_EQ(better.metrics[0].verdict, GateVerdict::Better);

    // Quiet data, no effect: every metric is "same" within the 5 % floor.
    Noise quiet;
    quiet.boot_sigma = 0.002;
    quiet.cycle_sigma = 0.01;
    const auto same = gate(simulate(rng, {}, quiet, 1.0));
    EXPECT_EQ(same.status, GateStatus::NoRegression) << same.reason;
    EXPECT_EQ(same.metrics[0].verdict, GateVerdict::Same);

    // One boot per arm: boot effects cannot be told from arm effects.
    Shape one;
    one.boots = 1;
    const auto single = gate(simulate(rng, one, {}, 2.0));
    EXPECT_EQ(single.metrics[0].verdict, GateVerdict::Inconclusive);
    EXPECT_NE(single.metrics[0].note.find("boots per arm"), std::string::npos);
    EXPECT_EQ(single.status, GateStatus::Inconclusive) << single.reason;
    EXPECT_NE(single.reason.find("boot effects cannot be told"), std::string::npos) << single.reason;

    // A secondary metric much worse does not gate.
    auto secondary = simulate(rng, {}, quiet, 1.0);
    for (auto& s : secondary.back().cand) s.value *= 2;
    const auto sec = gate(secondary);
    EXPECT_EQ(sec.status, GateStatus::NoRegression) << sec.reason;
    EXPECT_FALSE(sec.metrics.back().primary);
}

TEST(Gate, APossibleRegressionTooNoisyToDecideIsInconclusive) {
    Rng rng(8);
    Noise noisy;
    noisy.boot_sigma = 0.05;
    Shape two;
    two.boots = 3;
    int inconclusive = 0;
    for (int i = 0; i < 50; ++i) {
        const auto r = gate(simulate(rng, two, noisy, 1.3));
        if (r.status == GateStatus::Inconclusive) {
            ++inconclusive;
            EXPECT_NE(r.reason.find("boots per arm would"), std::string::npos) << r.reason;
            EXPECT_GT(r.metrics[0].boots_needed, 2u);
        }
    }
    std::printf("a 30 %% effect, 5 %% boot noise, 3 boots: %d of 50 runs inconclusive\n", inconclusive);
    EXPECT_GE(inconclusive, 5) << "a 30 % effect under 5 % boot noise with 3 boots is often undecided";
}

TEST(Gate, DriftLargerThanTheEffectMakesARegressionInconclusive) {
    Rng rng(9);
    const auto metrics = simulate(rng, {}, {}, 1.4);
    std::vector<GateSample> ref;
    for (int round = 0; round < 20; ++round) ref.push_back({round < 10 ? 1.0 : 2.0, 0, round});
    const auto r = gate(metrics, {}, ref, "reference workload");
    EXPECT_TRUE(r.drift.checked);
    EXPECT_NEAR(r.drift.change, 1.0, 1e-9);
    EXPECT_EQ(r.status, GateStatus::Inconclusive) << r.reason;
    EXPECT_NE(r.reason.find("host's speed changed by +100.0 %"), std::string::npos) << r.reason;

    std::vector<GateSample> steady;
    for (int round = 0; round < 20; ++round) steady.push_back({1.0, 0, round});
    EXPECT_EQ(gate(metrics, {}, steady, "reference workload").status, GateStatus::Regression);
}

TEST(Gate, ExitStatusNumbersAreTheDocumentedOnes) {
    EXPECT_EQ(static_cast<int>(GateStatus::NoRegression), 0);
    EXPECT_EQ(static_cast<int>(GateStatus::Regression), 1);
    EXPECT_EQ(static_cast<int>(GateStatus::BadInput), 2);
    EXPECT_EQ(static_cast<int>(GateStatus::Inconclusive), 3);
    EXPECT_EQ(static_cast<int>(GateStatus::RunFailed), 4);
}
