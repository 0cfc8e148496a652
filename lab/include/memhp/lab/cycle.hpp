#pragma once
// One hot-plug cycle: add -> online -> offline -> remove, with host-side wall
// time and the guest's memory state after each phase.
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "memhp/lab/memory.hpp"

namespace memhp::lab {

inline const std::vector<std::string> kPhases = {"add", "online", "offline", "remove"};

struct CycleOptions {
    std::uint64_t dimm_size = std::uint64_t{128} << 20;
    int node = 1;
    Zone zone = Zone::Movable;
    std::chrono::milliseconds timeout{120000};  // per wait inside a phase
    int dimms = 1;                               // DIMMs of dimm_size added (and removed) together each cycle
    // The kernel onlines added blocks (Guest::kernel_onlines()): the online
    // phase waits for that instead of writing each block's state.
    bool kernel_onlines = false;
};

struct PhaseRecord {
    std::string phase;
    double wall_s = 0;  // host-side wall time of the phase
    bool ok = true;
    std::string error;
    int guest_errno = 0;
    MemorySnapshot after;
};

struct CycleRecord {
    int index = 0;
    std::vector<Dimm> dimms;  // the DIMMs added this cycle, in order
    MemorySnapshot before;
    std::vector<PhaseRecord> phases;
    std::string zone;  // as the guest reports it after online
    std::string online_by = "lab";  // "kernel" under auto-online
    bool device_deleted = false;
    bool guest_lost = false;  // QEMU died or the guest stopped answering
    // After a failed phase: what was done to leave the guest as it was
    // ("removed 1 DIMM", "left 2 DIMMs online: ..."); empty when nothing was needed.
    std::string cleanup;
    [[nodiscard]] bool ok() const;
    [[nodiscard]] const PhaseRecord* phase(const std::string& name) const;
};

// Runs one cycle. Failures are recorded in the phase (the remaining phases
// are skipped, and DIMMs that were added are taken out again where that is
// safe), never thrown, except Interrupted. `on_phase` runs after each phase.
CycleRecord run_cycle(MemoryLab& lab, const CycleOptions& opts, int index,
                      const std::function<void(const CycleRecord&, const PhaseRecord&)>& on_phase = {});

[[nodiscard]] nlohmann::json to_json(const CycleRecord& c);

}  // namespace memhp::lab
