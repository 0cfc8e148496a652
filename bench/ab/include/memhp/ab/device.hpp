// SPDX-License-Identifier: Apache-2.0
#pragma once
// What an arm of `memhp ab` hot-plugs in its cycles: ACPI pc-DIMMs,
// virtio-mem blocks, or (not yet) dax/kmem. Each is one implementation of
// HotplugDevice, so the runner has no per-device branches.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "memhp/lab/cycle.hpp"
#include "memhp/lab/guest.hpp"
#include "memhp/lab/memory.hpp"

namespace memhp::ab {

enum class DeviceKind { Dimm, VirtioMem, Dax };
// "dimm" | "virtio-mem" | "dax"; UsageError naming them otherwise.
[[nodiscard]] DeviceKind parse_device(std::string_view text);
[[nodiscard]] const char* device_name(DeviceKind d);
// Why this build cannot run `d`; nullopt when it can.
[[nodiscard]] std::optional<std::string> device_unavailable(DeviceKind d);

// Where `d`'s memmap comes from when memmap_on_memory does not decide it
// (virtio-mem: always the page allocator); empty when the parameter decides.
[[nodiscard]] std::string device_memmap_note(DeviceKind d);

class HotplugDevice {
public:
    virtual ~HotplugDevice() = default;
    [[nodiscard]] virtual DeviceKind kind() const = 0;
    // What the guest needs at boot for this device (virtio-mem: a device on
    // `node` large enough for one cycle's `cycle_bytes`).
    virtual void configure(lab::GuestConfig& guest, std::uint64_t cycle_bytes, int node) const = 0;
    // One add -> online -> offline -> remove cycle (lab/cycle.hpp).
    // The device may keep per-guest state (dax: the namespace it set up).
    [[nodiscard]] virtual lab::CycleRecord cycle(lab::Machine& guest, lab::MemoryLab& mem,
                                                 const lab::CycleOptions& opts, int index) = 0;
    // The adds (and removes) memhp's probes record in one cycle `c`: one per
    // DIMM, one per block for virtio-mem (the driver adds block by block).
    [[nodiscard]] virtual std::size_t ops_per_cycle(const lab::CycleRecord& c) const = 0;
};

// Throws UsageError (device_unavailable's reason) for a device this build
// cannot run. `mmo`: the arm's memmap_on_memory, which dax also writes to
// the dax device's attribute where the kernel has one.
[[nodiscard]] std::unique_ptr<HotplugDevice> make_device(DeviceKind d, std::optional<bool> mmo = std::nullopt);

}  // namespace memhp::ab
