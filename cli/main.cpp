// SPDX-License-Identifier: Apache-2.0
// memhp: eBPF observability and A/B benchmarking for Linux memory hot(un)plug.
#include <iostream>
#include <map>

#include "commands.hpp"
#include "memhp/error.hpp"
#include "memhp/stop.hpp"
#include "memhp/version.hpp"

int main(int argc, char** argv) {
    CLI::App app{
        "memhp: where each hot-added memmap page comes from, what hot-add costs, and the two memmap "
        "strategies side by side.\nRun 'memhp <command> --help' for a command's flags."};
    app.set_version_flag("--version", std::string("memhp ") + memhp::kVersion);
    app.require_subcommand(1);
    std::map<CLI::App*, memhp::cli::Runner> runners;
    for (auto add : {memhp::cli::add_ab_command, memhp::cli::add_compare_command, memhp::cli::add_report_command,
                     memhp::cli::add_lab_command, memhp::cli::add_count_adds_command, memhp::cli::add_trace_command,
                     memhp::cli::add_doctor_command}) {
        auto cmd = add(app);
        runners[cmd.app] = std::move(cmd.run);
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);  // prints help, version or the error
        return code == 0 ? 0 : 2;
    }
    memhp::install_stop_handlers();
    try {
        for (auto* sub : app.get_subcommands())
            if (auto it = runners.find(sub); it != runners.end()) return it->second();
        return 2;
    } catch (const memhp::Interrupted&) {
        std::cerr << "memhp: interrupted\n";
        return 130;
    } catch (const memhp::UsageError& e) {
        std::cerr << "memhp: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "memhp: error: " << e.what() << "\n";
        return 1;
    }
}
