// SPDX-License-Identifier: Apache-2.0
#pragma once
// `--gate` on results files: the gate (gate.hpp) fed from `memhp ab`
// results, its markdown, and the A/A calibration a gated summary names.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "memhp/ab/gate.hpp"

namespace memhp::ab {

// Arms `base_arm` and `cand_arm` of one run. RunFailed when the run did not
// complete, an arm lost its guest, a cycle failed or the tracer dropped
// events: a gate must not judge a run it cannot trust.
[[nodiscard]] GateResult gate_run(const nlohmann::json& results, const std::string& base_arm,
                                  const std::string& cand_arm, const GateOptions& opts = {});

// One arm in two different runs. Each run's boots are replicates as in one
// run, but the runs also differ in when they ran: the drift check compares
// the two runs' reference workloads, and a regression whose size the drift
// matches is inconclusive. The reason says that runs, not arms, were compared.
[[nodiscard]] GateResult gate_runs(const nlohmann::json& base, const nlohmann::json& cand, const std::string& base_arm,
                                   const std::string& cand_arm, const GateOptions& opts = {});

// The A/A calibration of this machine (`memhp ab --aa`).
struct Calibration {
    std::string date;  // ISO 8601
    std::string host;
    int runs = 0, false_alarms = 0, inconclusive = 0;
    int boots = 0, cycles = 0;
    std::string kernel;
};
[[nodiscard]] nlohmann::json to_json(const Calibration& c);
// Nullopt when the file is missing; throws BadResults when it is malformed.
[[nodiscard]] std::optional<Calibration> load_calibration(const std::filesystem::path& path);
// ${MEMHP_CACHE_DIR:-~/.cache/memhp}/calibration.json
[[nodiscard]] std::filesystem::path default_calibration_path();

// The gate's section of summary.md: status, reason, per-metric verdicts,
// the error control used and the calibration it relies on.
[[nodiscard]] std::string gate_markdown(const GateResult& r, const std::string& base_label,
                                        const std::string& cand_label, const GateOptions& opts,
                                        const std::optional<Calibration>& calibration);

}  // namespace memhp::ab
