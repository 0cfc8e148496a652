// SPDX-License-Identifier: Apache-2.0
#pragma once
// Guest flags shared by every command that boots a lab guest (lab, ab, ...).
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "memhp/lab/guest.hpp"

namespace memhp::cli {

struct GuestOptions {
    std::string kernel = "6.1";
    std::string memmap_on_memory = "default";
    std::string node_mem = "1G,0";
    unsigned cpus = 2;
    unsigned slots = 16;
    std::string maxmem;
    std::vector<std::string> append;
    std::string accel = "tcg";
    int boot_timeout_s = 180;
    std::string qemu = "qemu-system-x86_64";
    std::string online = "auto";
};

// `with_memmap_flag`: false for commands whose arms set memmap_on_memory.
void add_guest_options(CLI::App* cmd, GuestOptions& o, bool with_memmap_flag = true);
// Validates and converts; throws UsageError.
[[nodiscard]] lab::GuestConfig to_guest_config(const GuestOptions& o);
// Prints progress lines to stderr, prefixed.
[[nodiscard]] lab::Guest::Progress stderr_progress();

}  // namespace memhp::cli
