// SPDX-License-Identifier: Apache-2.0
#pragma once
// The CI gate's statistics: verdicts on A/B samples with boots as the unit
// of replication, error control across metrics, and a drift check.
//
// Why boots: a guest's layout (KASLR, the direct map) differs per boot and
// can change a metric for every cycle of that boot (one guest needing 8 KiB
// of page tables per add where another needs 4 KiB). Cycles of one boot are
// therefore not independent observations of an arm. The gate summarises each
// boot by its median and compares the arms' boot medians (Welch's t-test, on
// the log scale for positive metrics, where effects are ratios), so a
// per-boot effect has to recur across boots to count.
//
// Pure functions of their inputs; the numerics are ALGLIB's.
#include <cstddef>
#include <string>
#include <vector>

#include "memhp/ab/metrics.hpp"

namespace memhp::ab {

// One cycle's value of one metric, with the boot (guest) it came from and the
// round it ran in.
struct GateSample {
    double value = 0;
    int boot = 0;
    int round = 0;
};

struct GateMetricInput {
    std::string name;
    Better better = Better::Lower;
    // Primary metrics form the family whose error is controlled (Holm) and
    // decide the status; secondary ones are reported with their raw p.
    bool primary = true;
    // A time (affected by the host's speed, so by drift), not a count.
    bool timing = true;
    std::vector<GateSample> base, cand;
};

// The primary metrics of `memhp ab --gate`: one time per kernel phase, and
// the two costs memmap_on_memory exists to remove.
[[nodiscard]] const std::vector<std::string>& default_primary_metrics();

struct GateOptions {
    // Family-wise error rate across the metrics (Holm's step-down procedure).
    double alpha = 0.05;
    // Smallest relative change worth a verdict (0.05 = 5 %): smaller
    // significant changes are "same".
    double floor = 0.05;
    // Boots per arm below which nothing but "inconclusive" can be said.
    std::size_t min_boots = 2;
};

// Differs: a significant change of a metric where neither direction is better.
enum class GateVerdict { Better, Worse, Same, Inconclusive, Differs };
[[nodiscard]] const char* gate_verdict_word(GateVerdict v);

struct GateMetricVerdict {
    std::string name;
    Better better = Better::Lower;
    GateVerdict verdict = GateVerdict::Inconclusive;
    std::size_t boots_base = 0, boots_cand = 0;
    double ratio = 1;                   // candidate / base (boot level)
    double ratio_lo = 1, ratio_hi = 1;  // its (1 - 2 alpha) interval
    double p = 1;                       // raw two-sided p of the boot-level test
    double p_adjusted = 1;              // Holm-adjusted across the tested metrics
    std::size_t boots_needed = 0;       // when inconclusive: boots per arm that would likely decide
    bool primary = true;
    std::string note;
};

// The exit statuses of `--gate`, the same for `memhp ab` and `memhp compare`.
enum class GateStatus { NoRegression = 0, Regression = 1, BadInput = 2, Inconclusive = 3, RunFailed = 4 };
[[nodiscard]] const char* gate_status_word(GateStatus s);

struct DriftCheck {
    bool checked = false;
    double change = 0;  // relative change of the reference from the run's first half to its second
    std::string reference;
};

struct GateResult {
    GateStatus status = GateStatus::NoRegression;
    std::string reason;  // one sentence a CI log can show
    std::vector<GateMetricVerdict> metrics;
    DriftCheck drift;
};

// Verdict per metric, Holm across the primary lower-is-better metrics, and
// the overall status, decided by the primary metrics alone:
// - Regression: one is significantly worse (Holm) by at least the floor;
// - Inconclusive: an arm has fewer than min_boots boots; or one is worse by
//   at least the floor with a Holm-adjusted p within 2 alpha (a possible
//   regression the data cannot confirm); or the drift reference moved by as
//   much as the largest timing effect claimed;
// - NoRegression otherwise.
// `reference` is a per-round measure that must not differ between arms (the
// host's speed); empty skips the drift check.
[[nodiscard]] GateResult gate(const std::vector<GateMetricInput>& metrics, const GateOptions& opts = {},
                              const std::vector<GateSample>& reference = {}, const std::string& reference_name = {});

// Holm's step-down adjustment of `p` (same order, monotone, capped at 1).
[[nodiscard]] std::vector<double> holm_adjust(const std::vector<double>& p);

// The median of each boot's samples, by boot id order.
[[nodiscard]] std::vector<double> boot_medians(const std::vector<GateSample>& samples);

}  // namespace memhp::ab
