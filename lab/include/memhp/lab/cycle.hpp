// SPDX-License-Identifier: Apache-2.0
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
    int dimms = 1;                              // DIMMs of dimm_size added (and removed) together each cycle
    // The kernel onlines added blocks (Machine::kernel_onlines()): the online
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
    std::string device = "dimm";  // what was hot-added: "dimm", "virtio-mem"
    // The DIMMs added this cycle, in order; for virtio-mem one entry: the
    // device's id and the blocks its driver added.
    std::vector<Dimm> dimms;
    MemorySnapshot before;
    std::vector<PhaseRecord> phases;
    std::string zone;               // as the guest reports it after online
    std::string online_by = "lab";  // "kernel" under auto-online
    bool device_deleted = false;
    bool guest_lost = false;  // QEMU died or the guest stopped answering
    // After a failed phase: what was done to leave the guest as it was
    // ("removed 1 DIMM", "left 2 DIMMs online: ..."); empty when nothing was needed.
    std::string cleanup;
    [[nodiscard]] bool ok() const;
    [[nodiscard]] const PhaseRecord* phase(const std::string& name) const;
};

// What a cycle plugs and unplugs. add() returns the memory it added, each
// entry with its guest blocks (online/offline write their states); remove()
// takes one entry out again and returns true when the host saw it go.
struct CycleDevice {
    std::string name = "dimm";
    std::function<std::vector<Dimm>(MemoryLab&, const CycleOptions&)> add;
    std::function<bool(MemoryLab&, const Dimm&, const CycleOptions&)> remove;
    // add() onlines the memory itself (dax/kmem): the online phase only
    // checks that every block is online, and online_by reads "device".
    bool onlines_in_add = false;
};
// opts.dimms DIMMs of opts.dimm_size, by device_add and device_del.
[[nodiscard]] CycleDevice dimm_device();
// virtio-mem device `index` of the guest: requested-size up to
// opts.dimms * opts.dimm_size, then back to 0 (the driver removes the
// offlined blocks itself).
[[nodiscard]] CycleDevice virtio_mem_device(std::size_t index = 0);

// Runs one cycle. Failures are recorded in the phase (the remaining phases
// are skipped, and DIMMs that were added are taken out again where that is
// safe), never thrown, except Interrupted. `on_phase` runs after each phase.
CycleRecord run_cycle(MemoryLab& lab, const CycleOptions& opts, int index,
                      const std::function<void(const CycleRecord&, const PhaseRecord&)>& on_phase = {});
// The same with another device than DIMMs.
CycleRecord run_cycle(MemoryLab& lab, const CycleDevice& device, const CycleOptions& opts, int index,
                      const std::function<void(const CycleRecord&, const PhaseRecord&)>& on_phase = {});

[[nodiscard]] nlohmann::json to_json(const CycleRecord& c);

}  // namespace memhp::lab
