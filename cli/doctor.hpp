// SPDX-License-Identifier: Apache-2.0
#pragma once
// memhp doctor: what memhp needs and what this kernel offers, one check per
// line with what to do about each missing item. The file checks read a root
// tree ("/" on a host; a fixture tree in the tests); the live checks (a
// ring-buffer map, attaching the probes for real) run only on "/".
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace memhp::cli {

enum class CheckStatus { Ok, Missing, Warn, Info, Skipped };
[[nodiscard]] const char* check_status_name(CheckStatus s);  // "ok", "missing", "warn", "info", "skipped"

struct Check {
    std::string id;     // stable key for --json, e.g. "btf"
    std::string title;  // "kernel BTF"
    CheckStatus status = CheckStatus::Info;
    std::string value;                               // what was found ("/sys/kernel/btf/vmlinux, 5.6 MB")
    std::string remedy;                              // what to do, when not ok
    bool essential = false;                          // memhp trace / the exporter cannot run without it
    nlohmann::json data = nlohmann::json::object();  // machine-readable details for --json
};

struct DoctorOptions {
    std::filesystem::path root = "/";
    bool live = true;  // attach the probes for real (only with root "/")
};

// Every check, in report order. Never throws for what the host lacks: that
// is a check's status.
[[nodiscard]] std::vector<Check> run_doctor(const DoctorOptions& opts);
// True when no essential check is missing.
[[nodiscard]] bool doctor_passed(const std::vector<Check>& checks);
[[nodiscard]] std::string doctor_table(const std::vector<Check>& checks);
[[nodiscard]] nlohmann::json doctor_json(const std::vector<Check>& checks);

// Parsers, exposed for the tests.
// CapEff from /proc/<pid>/status text as a bit mask (0 when absent).
[[nodiscard]] std::uint64_t parse_cap_eff(const std::string& status);

}  // namespace memhp::cli
