// SPDX-License-Identifier: Apache-2.0
#pragma once
// The arithmetic of a scale run, done before anything boots: how much boot
// memory the guest needs for the memmap of what will be plugged, how many
// steps, and whether this host can hold it.
#include <cstdint>
#include <string>

namespace memhp::ab {

enum class ScaleDevice { Dimm, VirtioMem };

struct ScaleRequest {
    ScaleDevice device = ScaleDevice::VirtioMem;
    std::uint64_t plug_bytes = 0;                // --scale-size
    std::uint64_t step_bytes = 128ull << 20;     // --scale-step
    std::uint64_t block_bytes = 128ull << 20;    // the guest's memory block size
    std::uint64_t base_boot_bytes = 1ull << 30;  // the lab's usual node-0 memory
    bool memmap_on_memory = false;               // only DIMMs can use it
    unsigned dimm_slots = 0;                     // DIMM scale stops at the slot count
    std::uint64_t host_available_bytes = 0;      // MemAvailable of the host
    unsigned guests = 1;                         // guests that run at once (one per arm)
};

struct ScalePlan {
    std::uint64_t steps = 0;
    std::uint64_t memmap_bytes = 0;  // memmap the plug takes from boot memory
    std::uint64_t boot_bytes = 0;    // -m for node 0
    std::uint64_t maxmem_bytes = 0;
    std::uint64_t host_bytes = 0;  // what the host commits for all guests (estimate)
    std::string arithmetic;        // the sums, for the run's log and a refusal
};

// QEMU's own memory beside the guest's RAM (TCG translation cache, devices).
inline constexpr std::uint64_t kQemuOverheadBytes = 512ull << 20;

// Throws UsageError, with the arithmetic, for a request that cannot run:
// sizes that are not whole steps or blocks, more DIMMs than slots, or guests
// the host cannot hold.
[[nodiscard]] ScalePlan plan_scale(const ScaleRequest& r);

}  // namespace memhp::ab
