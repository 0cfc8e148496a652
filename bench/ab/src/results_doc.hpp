// SPDX-License-Identifier: Apache-2.0
#pragma once
// The results document of one `memhp ab` run (private to bench/ab):
// results.json as it grows (docs/ab-json.md), saved atomically after every
// step so an interrupted run keeps what it measured, and finished with the
// summary and plots.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "fleet.hpp"
#include "memhp/ab/runner.hpp"

namespace memhp::ab::detail {

class ResultsDoc {
public:
    ResultsDoc(nlohmann::json& root, std::filesystem::path out) : root_(root), out_(std::move(out)) {}
    ResultsDoc(const ResultsDoc&) = delete;
    ResultsDoc& operator=(const ResultsDoc&) = delete;

    [[nodiscard]] nlohmann::json& root() { return root_; }
    // The options, one empty record per arm, status "running"; saved.
    void init(const AbConfig& cfg);
    // Writes results.json atomically.
    void save() const;
    // Stamps the end, records the peer's agreement, shuts the fleet down and
    // writes the plots and summary.md. False when the plots failed.
    [[nodiscard]] bool finish(const AbConfig& cfg, Clock::time_point t0, Fleet& fleet);

private:
    void write_summary(const AbConfig& cfg);

    nlohmann::json& root_;
    std::filesystem::path out_;
};

}  // namespace memhp::ab::detail
