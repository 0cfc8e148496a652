// SPDX-License-Identifier: Apache-2.0
#pragma once
// memhp ab --matrix: one short cycle run per cell kernel x device x
// memmap_on_memory mode, impossible cells skipped with their reason before
// any boot, and one table (summary.md, results.json) and one plot of them
// all: memmap source and locality, free memory consumed per GiB hot-added,
// per-block add/online/offline/remove latency.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "memhp/ab/device.hpp"
#include "memhp/ab/runner.hpp"

namespace memhp::ab {

inline constexpr const char* kMatrixSchema = "memhp.ab-matrix/1";

// The (major, minor) a --kernel value stands for, when it can be known
// before boot: "5.10", "6.1"/"default", "6.12", "7.2"/"latest", the
// patched/unpatched series, linux-image-X.Y... packages. nullopt for a
// file (its kernel is checked at boot).
[[nodiscard]] std::optional<std::pair<int, int>> kernel_series_version(std::string_view spec);

struct MatrixCell {
    std::string kernel;  // as given in --kernels
    DeviceKind device = DeviceKind::Dimm;
    std::string mmo;   // on | off | default
    std::string name;  // the arm name of its run: k6.1-dimm-on
    std::string skip;  // why it is not run; empty: it runs
};

// Every cell in order kernel, device, mode, each with its skip reason:
// no memmap_on_memory before 5.12; virtio-mem runs once per kernel (with
// mmo=on where the kernel has it: it never uses the altmap, so the other
// mode is the same cell); the dax memmap_on_memory attribute only from
// 6.8; devices this build cannot run. Throws UsageError for an unknown
// kernel, device or mode, or for an empty list.
[[nodiscard]] std::vector<MatrixCell> plan_matrix(const std::vector<std::string>& kernels,
                                                  const std::vector<DeviceKind>& devices,
                                                  const std::vector<std::string>& mmos);

struct MatrixConfig {
    std::vector<std::string> kernels{"5.10", "6.1", "6.12", "7.2"};
    std::vector<DeviceKind> devices{DeviceKind::Dimm, DeviceKind::VirtioMem, DeviceKind::Dax};
    std::vector<std::string> mmos{"on", "off"};
    lab::GuestConfig guest;  // every cell's guest, with its kernel, device and mode set
    AbConfig run;            // cycles, sizes, node, zone, timeout, out, plots; arms are the cells
};

// A failed cell's reason as the table and the progress line show it: the
// error's own words up to the console dump a guest failure appends (replaced
// by the console log's path), on one line, at most 400 bytes.
[[nodiscard]] std::string cell_reason(const std::string& error);

// One cell's row from the results of its run (cell_run: run_ab's document).
[[nodiscard]] nlohmann::json matrix_row(const MatrixCell& cell, const nlohmann::json& cell_run,
                                        std::uint64_t cycle_bytes);
// The table of every cell (rows as matrix_row writes them, skipped and failed ones too).
[[nodiscard]] std::string matrix_markdown(const nlohmann::json& matrix);

// Runs every cell that is not skipped, one guest at a time, each in
// out/cells/NAME/. A failed cell is recorded with its reason and the
// matrix goes on; results.json is rewritten after every cell, so Ctrl-C
// (Interrupted, rethrown) keeps the finished ones. Returns 0 when every
// cell that ran passed, 1 otherwise.
int run_matrix(const MatrixConfig& cfg, const Progress& progress, nlohmann::json& results);

}  // namespace memhp::ab
