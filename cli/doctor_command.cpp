// SPDX-License-Identifier: Apache-2.0
// memhp doctor: the checklist of doctor.hpp as a table or JSON.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "doctor.hpp"
#include "memhp/error.hpp"

namespace memhp::cli {

Command add_doctor_command(CLI::App& app) {
    struct Opts {
        bool json = false;
        std::string root = "/";
    };
    auto o = std::make_shared<Opts>();
    auto* cmd = app.add_subcommand(
        "doctor",
        "Check what memhp needs and what this kernel offers: privileges, BTF, BPF trampolines or only kprobes, the "
        "ring buffer, CONFIG_MEMORY_HOTPLUG, the memory block size, memmap_on_memory (and whether multi-block adds "
        "use it), auto_online_blocks and the online policy, movable zones, nr_memmap_pages, hot-plug devices, "
        "bpffs/tracefs, and which probes attach (attached for real, then detached). One line per check with what "
        "to do about each missing item. Exit status 1 when something essential is missing.");
    cmd->add_flag("--json", o->json,
                  "print one JSON object (schema 1: ok, checks[] with id, status, value, remedy, data)");
    cmd->add_option("--root", o->root,
                    "read /proc and /sys under DIR instead of / (a copied or fixture tree); the live checks (ring "
                    "buffer, attaching the probes) are skipped then")
        ->check(CLI::ExistingDirectory)
        ->default_str("/");
    return {cmd, [o] {
                const auto t0 = std::chrono::steady_clock::now();
                DoctorOptions opts;
                opts.root = o->root;
                opts.live = o->root == "/";
                if (!o->json) std::fprintf(stderr, "memhp doctor: checking %s...\n", o->root.c_str());
                const auto checks = run_doctor(opts);
                const double ms =
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
                if (o->json) {
                    auto j = doctor_json(checks);
                    j["elapsed_ms"] = static_cast<long>(ms);
                    std::cout << j.dump(2) << std::endl;
                } else {
                    std::cout << doctor_table(checks);
                    std::fprintf(stderr, "memhp doctor: %.0f ms\n", ms);
                }
                return doctor_passed(checks) ? 0 : 1;
            }};
}

}  // namespace memhp::cli
