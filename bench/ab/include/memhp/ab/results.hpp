// SPDX-License-Identifier: Apache-2.0
#pragma once
// The typed model of a results file (memhp.ab/1, docs/ab-results.schema.json)
// and its loader. A results file is outside input: a CI artifact of another
// job, branch or person. Loading checks every field the readers (report,
// compare, plots, scenario, peer) use, and anything that does not fit is a
// BadResults naming the field path ("arms[1].cycles[3].metrics.probe_add_s:
// not a number"), which the CLI turns into exit status 2.
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memhp/error.hpp"

namespace memhp::ab {

inline constexpr const char* kResultsSchema = "memhp.ab/1";
// Largest results file memhp reads (a 100-cycle run with ops is a few MiB).
inline constexpr std::size_t kMaxResultsBytes = 256u << 20;
// Deepest JSON nesting accepted (memhp writes at most 6 levels).
inline constexpr int kMaxResultsDepth = 64;

// A results file that is not what report/compare need (exit status 2).
class BadResults : public UsageError {
public:
    using UsageError::UsageError;
};

// The arm-name rule of --arm: 1-32 of [A-Za-z0-9._-], starting alphanumeric.
[[nodiscard]] bool valid_arm_name(std::string_view name);

struct PhaseRecord {
    std::string phase;
    bool ok = true;
    std::string error;
};

struct CycleRecord {
    std::uint64_t index = 0;
    bool ok = false;
    std::map<std::string, double> metrics;  // null values (not measured) left out
    std::vector<PhaseRecord> phases;
};

struct ScaleStep {
    bool ok = false;
    double present_before_bytes = 0, probe_add_s = 0, probe_online_s = 0, wall_add_s = 0, wall_online_s = 0;
    double e2e_s = 0;   // virtio-mem: QMP request to the step online (0: not recorded)
    double blocks = 1;  // memory blocks the step added
    // The online's sub-phases (kernel function -> own seconds), names [a-z0-9_]{1,48}.
    std::map<std::string, double> online_sub_s;
};

struct GuestRecord {
    std::string release;
    std::string memmap_on_memory = "?";
    std::string probes;
    std::string auto_online_blocks;  // the policy the guest ran with; empty: not recorded
    double boot_s = 0;
    double attach_s = 0;
    std::string trace_losses;  // trace_losses_text(): empty when memhp trace lost nothing
};

// What memhp trace lost in an arm, from its guest record (trace_dropped_events,
// trace_decode_errors, trace_orphan_page_events, trace_stale_ops,
// trace_untraced_ops, trace_summary_missing; docs/ab-json.md) as one
// sentence, or empty when it lost nothing. Reads defensively: a wrong type
// counts as absent (the loader has refused such files already).
[[nodiscard]] std::string trace_losses_text(const nlohmann::json& guest);

struct ArmRecord {
    std::string name;
    std::string kernel_spec = "?";
    std::string online_requested = "manual";  // --online / online=: auto | manual (older files: manual)
    std::string device = "dimm";              // device=: dimm | virtio-mem | dax (older files: dimm)
    std::optional<GuestRecord> guest;         // null: the guest never got ready
    std::vector<CycleRecord> cycles;
    std::vector<ScaleStep> scale;
};

struct OptionsRecord {
    std::string mode = "cycles";  // cycles | scale
    std::uint64_t cycles = 0, dimm_bytes = 0, dimms = 1, node = 1, scale_bytes = 0;
    std::string scale_device = "dimm";   // dimm | virtio-mem (older files: dimm)
    std::uint64_t scale_step_bytes = 0;  // the scale ramp's step; older files: dimm_bytes
    std::string zone = "movable";
    std::string scenario = "none";
};

struct FallbackRecord {
    std::string guest, release;
    double dimm_bytes = 0, altmap_bytes = 0, page_allocator_bytes = 0;
    std::optional<std::string> error;
    bool unused = false;
    std::string reason;
};

struct Results {
    std::string title = "hot-add A/B";
    std::string status;
    OptionsRecord options;
    std::vector<ArmRecord> arms;
    std::vector<FallbackRecord> fallback_check;
    std::vector<std::string> errors;
    // The validated document, for the scenario and peer sections (their
    // fields are checked by the loader too).
    nlohmann::json doc;
};

// Parses and validates results text; `origin` (a path) prefixes messages.
[[nodiscard]] Results parse_results(std::string_view text, const std::string& origin = "results");
// Validates an already parsed document (what memhp ab itself renders).
[[nodiscard]] Results results_from_json(const nlohmann::json& doc, const std::string& origin = "results");
// Reads a results file: a regular file of at most kMaxResultsBytes.
[[nodiscard]] Results load_results(const std::filesystem::path& path);
// One arm record on its own (tests, compare of crafted arms).
[[nodiscard]] ArmRecord arm_from_json(const nlohmann::json& arm, const std::string& path = "arm");

// The first 40 bytes of `s` with anything but printable ASCII as \xNN: for messages.
[[nodiscard]] std::string printable_prefix(const std::string& s);

[[nodiscard]] const ArmRecord* find_arm(const Results& results, const std::string& name);

}  // namespace memhp::ab
