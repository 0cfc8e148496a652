// SPDX-License-Identifier: Apache-2.0
#pragma once
// Comparing arms: per metric, both arms' median and spread, the ratio and
// the Mann-Whitney significance; rendered as the markdown table a CI job
// prints. Used by `memhp ab` (arms of one run) and `memhp compare` (the same
// arm in two runs).
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memhp/ab/gate_results.hpp"
#include "memhp/ab/metrics.hpp"
#include "memhp/ab/results.hpp"
#include "memhp/ab/stats.hpp"

namespace memhp::ab {

struct CompareOptions {
    double alpha = 0.05;               // significance level of the U test
    double threshold = 0.05;           // relative change below which a significant difference is still "same"
    std::vector<std::string> metrics;  // empty: all
    // --gate: the summary ends with the gate's verdict on the last arm
    // against the first (gate_results.hpp), naming this calibration.
    bool gate = false;
    GateOptions gate_opts;
    std::optional<Calibration> calibration;
};

enum class Verdict { Same, Better, Worse, Differs, TooFew };
[[nodiscard]] const char* verdict_word(Verdict v);

struct Comparison {
    const MetricDef* def = nullptr;
    Summary base, cand;
    double ratio = 1;  // cand median / base median; inf when only the base is 0
    double p = 1;
    Verdict verdict = Verdict::Same;
};

// The metric samples of an arm's good cycles: name -> values in cycle order.
[[nodiscard]] std::map<std::string, std::vector<double>> arm_samples(const ArmRecord& arm);

// Compares metric by metric; metrics absent from both are left out.
[[nodiscard]] std::vector<Comparison> compare_arms(const ArmRecord& base, const ArmRecord& cand,
                                                   const CompareOptions& opts);
// The same on arm objects of a results document (validated first; BadResults).
[[nodiscard]] std::vector<Comparison> compare_arms(const nlohmann::json& base, const nlohmann::json& cand,
                                                   const CompareOptions& opts);
[[nodiscard]] bool any_worse(const std::vector<Comparison>& cs);

// "1.23 ms", "2.0 MiB", ...
[[nodiscard]] std::string format_value(double v, const std::string& unit);
[[nodiscard]] std::string markdown_table(const std::vector<Comparison>& cs, const std::string& base_label,
                                         const std::string& cand_label, const CompareOptions& opts);

// The markdown summary of an A/B run: arms, the comparison of every arm
// with the first, the seed claims where the run measured them, failures.
[[nodiscard]] std::string summary_markdown(const Results& results, const CompareOptions& opts);
// The same on a document (validated first: BadResults when it does not fit).
[[nodiscard]] std::string summary_markdown(const nlohmann::json& results, const CompareOptions& opts);
// Text from a results file made safe for one markdown table cell: no '|',
// no line breaks, no control characters.
[[nodiscard]] std::string md_cell(std::string_view s);
// A guest's probe attach line as "21/23, populate direct" ("–" when it has none).
[[nodiscard]] std::string probes_cell(const std::string& line);

}  // namespace memhp::ab
