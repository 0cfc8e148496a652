// SPDX-License-Identifier: Apache-2.0
// memhp count-adds: the smoke probe. Counts __add_pages() calls until Ctrl-C
// (or --duration), then prints the totals as JSON.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.hpp"
#include "memhp/collector/add_counter.hpp"
#include "memhp/collector/bpf_support.hpp"
#include "memhp/stop.hpp"

namespace memhp::cli {

Command add_count_adds_command(CLI::App& app) {
    auto* cmd = app.add_subcommand("count-adds",
                                   "Count __add_pages() calls (a minimal probe that checks BPF works on this kernel) "
                                   "until Ctrl-C/SIGTERM or --duration, then print JSON totals.");
    auto duration = std::make_shared<double>(0);
    auto verbose = std::make_shared<bool>(false);
    cmd->add_option("--duration", *duration, "stop after this many seconds (0: until Ctrl-C or SIGTERM)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("-v,--verbose", *verbose, "print libbpf's debug messages");
    return {cmd, [=] {
                collector::install_libbpf_logging(*verbose);
                collector::AddCounter counter;
                std::cerr << "memhp: attached __add_pages counter (" << collector::AddCounter::mode_name(counter.mode())
                          << "); Ctrl-C to stop" << std::endl;
                const auto t0 = std::chrono::steady_clock::now();
                while (!stop_requested()) {
                    if (*duration > 0 &&
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >= *duration)
                        break;
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
                }
                auto t = counter.read();
                nlohmann::json out{{"mode", collector::AddCounter::mode_name(counter.mode())},
                                   {"calls", t.calls},
                                   {"nr_pages", t.nr_pages}};
                std::cout << out.dump() << std::endl;
                return 0;
            }};
}

}  // namespace memhp::cli
