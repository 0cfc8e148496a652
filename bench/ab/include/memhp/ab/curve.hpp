// SPDX-License-Identifier: Apache-2.0
#pragma once
// The scale curve, analysed: how one block's hot-add cost grows with the
// memory already present, per phase and sub-phase. Pure functions; the
// regression is ALGLIB's.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace memhp::ab {

// cost ~ present^exponent, fitted as a line in log-log space over the steps.
struct GrowthFit {
    double exponent = 0;
    double lo = 0, hi = 0;  // its 95 % interval
    std::size_t points = 0;
};

// `present[i]`: memory blocks present when step i ran, the step's own
// included (so the first step is 1); `cost[i]`: its cost (> 0). Steps with a
// non-positive cost or presence are left out. Empty when fewer than 4 remain.
[[nodiscard]] std::optional<GrowthFit> fit_growth(const std::vector<double>& present, const std::vector<double>& cost);

// One scale step of one phase (e.g. online) with the sub-phases the probes
// timed inside it (e.g. move_pfn_range_to_zone).
struct CurveStep {
    double present_blocks = 0;
    double cost_s = 0;
    std::map<std::string, double> sub_s;
};

struct SubPhaseShare {
    std::string name;
    double first = 0, last = 0;  // share of the phase's cost in the first and last eighth of the steps
    std::optional<GrowthFit> fit;
};

struct CurveAnalysis {
    std::string phase;
    std::optional<GrowthFit> fit;
    std::vector<SubPhaseShare> sub;  // sorted by growth of share, most first
    std::string sentence;            // "online cost grows as present^1.02 [0.95, 1.09]; ..."
};

[[nodiscard]] CurveAnalysis analyse_curve(const std::string& phase, const std::vector<CurveStep>& steps);

// The scale ramp of one arm of a results file ("scale": steps with
// present_before_bytes and probe_<phase>_s, each step `step_bytes`; the
// exponent does not depend on the unit of presence), analysed per phase: add (with
// populate as its sub-phase) and online. Reads defensively: a step with a
// wrong type is left out. {"add": {...}, "online": {...}}, each with
// exponent, lo, hi, points, sub (name, first_share, last_share) and sentence.
[[nodiscard]] nlohmann::json scale_analysis(const nlohmann::json& arm, std::uint64_t step_bytes);

}  // namespace memhp::ab
