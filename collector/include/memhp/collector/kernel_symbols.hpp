// SPDX-License-Identifier: Apache-2.0
#pragma once
// Parsers for the kernel's symbol lists, restricted to the names memhp asks
// about (the lists hold 100k+ lines; nothing else is kept). Pure functions on
// text (or streams), so they are tested on fixture text.
#include <cstdint>
#include <istream>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace memhp::collector {

struct KallsymsInfo {
    std::map<std::string, std::uint64_t> address;  // wanted symbol -> address (first seen)
    std::map<std::string, std::uint64_t> end;      // wanted symbol -> address of the next symbol
    std::set<std::string> text;                    // wanted names that are text symbols (t/T)
};

// /proc/kallsyms: "ffffffff81234560 T name" (+ "\t[module]"). Addresses read 0
// without CAP_SYSLOG; the caller checks.
[[nodiscard]] KallsymsInfo parse_kallsyms(std::string_view text, const std::set<std::string>& wanted);
[[nodiscard]] KallsymsInfo parse_kallsyms(std::istream& in, const std::set<std::string>& wanted);

// available_filter_functions: "name" or "name [module]" per line; from 6.5
// available_filter_functions_addrs puts an address first, which is skipped.
[[nodiscard]] std::set<std::string> parse_function_list(std::string_view text, const std::set<std::string>& wanted);
[[nodiscard]] std::set<std::string> parse_function_list(std::istream& in, const std::set<std::string>& wanted);

// debugfs kprobes/blacklist: "0xstart-0xend\tname".
[[nodiscard]] std::set<std::string> parse_kprobe_blacklist(std::string_view text, const std::set<std::string>& wanted);
[[nodiscard]] std::set<std::string> parse_kprobe_blacklist(std::istream& in, const std::set<std::string>& wanted);

}  // namespace memhp::collector
