// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/scale_plan.hpp"

#include "memhp/error.hpp"
#include "memhp/size.hpp"

namespace memhp::ab {
namespace {

constexpr std::uint64_t kRound = 256ull << 20;

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

std::string sz(std::uint64_t b) { return format_size_human(b); }

}  // namespace

ScalePlan plan_scale(const ScaleRequest& r) {
    if (r.block_bytes == 0 || r.step_bytes == 0 || r.plug_bytes == 0)
        throw UsageError("--scale-size and --scale-step must be positive");
    if (r.step_bytes % r.block_bytes != 0)
        throw UsageError("--scale-step " + sz(r.step_bytes) + " is not a whole number of " + sz(r.block_bytes) +
                         " memory blocks");
    if (r.plug_bytes % r.step_bytes != 0)
        throw UsageError("--scale-size " + sz(r.plug_bytes) + " is not a whole number of " + sz(r.step_bytes) +
                         " steps");
    ScalePlan p;
    p.steps = r.plug_bytes / r.step_bytes;
    if (r.device == ScaleDevice::Dimm && r.dimm_slots > 0 && p.steps > r.dimm_slots)
        throw UsageError("DIMM scale stops at the slot count: " + sz(r.plug_bytes) + " in " + sz(r.step_bytes) +
                         " DIMMs is " + std::to_string(p.steps) + " DIMMs, the machine has " +
                         std::to_string(r.dimm_slots) + " slots; use --device virtio-mem or a bigger --scale-step");
    // virtio-mem never puts the memmap on the added memory (it does not pass
    // MHP_MEMMAP_ON_MEMORY), so 1/64 of the plug comes out of boot memory;
    // so does a DIMM's without memmap_on_memory.
    const bool altmap = r.device == ScaleDevice::Dimm && r.memmap_on_memory;
    p.memmap_bytes = altmap ? 0 : r.plug_bytes / 64;
    // Page tables of the direct map and the vmemmap, and the kernel's other
    // per-block state: under 1/1024 of the plug.
    const std::uint64_t tables = r.plug_bytes / 1024;
    p.boot_bytes = round_up(r.base_boot_bytes + p.memmap_bytes + tables, kRound);
    p.maxmem_bytes = p.boot_bytes + r.plug_bytes;
    // The backend is created with reserve=off: the host commits what the
    // guest touches, the boot memory (where the memmap lives) and QEMU itself.
    const std::uint64_t per_guest = p.boot_bytes + kQemuOverheadBytes;
    p.host_bytes = per_guest * r.guests;
    p.arithmetic =
        "boot memory " + sz(p.boot_bytes) + " = " + sz(r.base_boot_bytes) + " + memmap " +
        (altmap ? std::string("0 (on the added memory)") : sz(r.plug_bytes) + "/64 = " + sz(p.memmap_bytes)) +
        " + page tables " + sz(tables) + ", rounded up to 256 MiB; host: " + std::to_string(r.guests) +
        " guest(s) x (" + sz(p.boot_bytes) + " + " + sz(kQemuOverheadBytes) + " QEMU) = " + sz(p.host_bytes);
    if (r.host_available_bytes > 0 && p.host_bytes > r.host_available_bytes)
        throw UsageError("refusing a scale run this host cannot hold: " + p.arithmetic + ", but MemAvailable is " +
                         sz(r.host_available_bytes) + "; use a smaller --scale-size or fewer arms");
    return p;
}

}  // namespace memhp::ab
