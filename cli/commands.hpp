// SPDX-License-Identifier: Apache-2.0
#pragma once
// Each memhp subcommand registers its flags on the CLI11 app and returns the
// function that runs it (exit code).
#include <CLI/CLI.hpp>
#include <functional>

namespace memhp::cli {

using Runner = std::function<int()>;
struct Command {
    CLI::App* app;
    Runner run;
};

Command add_lab_command(CLI::App& app);
Command add_count_adds_command(CLI::App& app);
Command add_trace_command(CLI::App& app);
Command add_ab_command(CLI::App& app);
Command add_compare_command(CLI::App& app);
Command add_report_command(CLI::App& app);
Command add_doctor_command(CLI::App& app);

}  // namespace memhp::cli
