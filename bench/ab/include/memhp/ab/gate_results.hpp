// SPDX-License-Identifier: Apache-2.0
#pragma once
// `--gate` on results files: the gate (gate.hpp) fed from `memhp ab`
// results, its markdown, and the A/A calibration a gated summary names.
#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "memhp/ab/gate.hpp"

namespace memhp::ab {

// Arms `base_arm` and `cand_arm` of one run. RunFailed when the run did not
// complete, an arm lost its guest or a cycle failed; Inconclusive when the
// tracer of either arm lost events (trace_losses_text): a gate must not
// judge a run it cannot trust.
[[nodiscard]] GateResult gate_run(const nlohmann::json& results, const std::string& base_arm,
                                  const std::string& cand_arm, const GateOptions& opts = {});

// One arm in two different runs. Each run's boots are replicates as in one
// run, but the runs also differ in when they ran: the drift check compares
// the two runs' reference workloads, and a regression whose size the drift
// matches is inconclusive. The reason says that runs, not arms, were compared.
[[nodiscard]] GateResult gate_runs(const nlohmann::json& base, const nlohmann::json& cand, const std::string& base_arm,
                                   const std::string& cand_arm, const GateOptions& opts = {});

// How much a primary metric varies on this machine, from A/A runs, on the
// log scale the gate tests timings on: a boot's median around the mean of
// its arm's boots, and a cycle around its boot's mean.
struct MetricSpread {
    std::string metric;
    double boot_sd = 0;   // of boot medians, at the calibration's cycles per boot
    double cycle_sd = 0;  // of cycles within a boot
    int boot_medians = 0;
    int cycles_per_boot = 0;  // what boot_sd was measured with
};

// Collects MetricSpreads over the A/A runs' results (both arms count).
class SpreadAccumulator {
public:
    void add(const nlohmann::json& results);
    [[nodiscard]] std::vector<MetricSpread> spreads() const;

private:
    struct Sums {
        double boot_sq = 0, cycle_sq = 0;
        int boot_n = 0, boot_dof = 0, cycle_dof = 0, cycles = 0;
    };
    std::map<std::string, Sums> sums_;
};

// Power of the gate for an effect on one primary metric, from its spread:
// boots per arm, cycles per boot, Welch's t at the Holm step alpha / m
// (the first step, where a single changed metric is judged). The boot
// median's variance is modelled as a boot component (what the measured
// boot_sd leaves after the sampling noise of its cycles' median, taken as
// 1.25 cycle_sd / sqrt(cycles)) plus that sampling noise at the new cycles.
[[nodiscard]] double detectable_ratio(const MetricSpread& s, int boots, int cycles_per_boot, double alpha, int metrics,
                                      double power = 0.9);
// The fewest boots per arm (up to `max_boots`, else nullopt) at which the
// gate catches `ratio` (e.g. 1.19) with `power`.
[[nodiscard]] std::optional<int> boots_needed(const MetricSpread& s, double ratio, int cycles_per_boot, double alpha,
                                              int metrics, double power = 0.9, int max_boots = 1000);

// The A/A calibration of this machine (`memhp ab --aa`).
struct Calibration {
    std::string date;  // ISO 8601
    std::string host;
    int runs = 0, false_alarms = 0, inconclusive = 0;
    int boots = 0, cycles = 0;
    std::string kernel;
    std::vector<MetricSpread> spreads;  // the primary metrics', when measured
    // The cycles each boot of the calibration ran (at least 1).
    [[nodiscard]] int cycles_per_boot() const { return std::max(1, cycles / std::max(1, boots)); }
    // The number of tests Holm's correction splits alpha over.
    [[nodiscard]] static int tests_corrected();
};
[[nodiscard]] nlohmann::json to_json(const Calibration& c);
// Nullopt when the file is missing; throws BadResults when it is malformed.
[[nodiscard]] std::optional<Calibration> load_calibration(const std::filesystem::path& path);
// "Power at those settings: ..." for a summary, or empty without spreads.
[[nodiscard]] std::string power_sentence(const Calibration& c, const GateOptions& opts);
// ${MEMHP_CACHE_DIR:-~/.cache/memhp}/calibration.json
[[nodiscard]] std::filesystem::path default_calibration_path();

// The gate's section of summary.md: status, reason, per-metric verdicts,
// the error control used and the calibration it relies on.
[[nodiscard]] std::string gate_markdown(const GateResult& r, const std::string& base_label,
                                        const std::string& cand_label, const GateOptions& opts,
                                        const std::optional<Calibration>& calibration);

}  // namespace memhp::ab
