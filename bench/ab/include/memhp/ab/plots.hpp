// SPDX-License-Identifier: Apache-2.0
#pragma once
// Plots of an A/B run, drawn by gnuplot (Debian: gnuplot-nox) from data
// files written beside its script, so a reader can re-render or restyle them.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "memhp/ab/results.hpp"

namespace memhp::ab {

// Writes latency (per phase and arm), memmap (source and locality), free
// memory cost and, for a scale run, the cost curve, each as SVG and PNG.
// Returns {"name": "path", ...}. Throws Error when gnuplot is missing or fails.
// Arm names reach gnuplot only as fields of the data files, never as script
// text, so no name can run a command.
// The pieces: `name` as one quoted, printable data-file field, and one plot
// drawn from `body` (gnuplot commands, memhp's own text only) into
// dir/NAME.svg and .png, with NAME.gp left beside them; adds {name: svg} to `out`.
[[nodiscard]] std::string plot_label(const std::string& name);
void plot_render(const std::filesystem::path& dir, const std::string& name, const std::string& body,
                 nlohmann::json& out);

nlohmann::json write_plots(const Results& results, const std::filesystem::path& dir);
nlohmann::json write_plots(const nlohmann::json& results, const std::filesystem::path& dir);

}  // namespace memhp::ab
