#include "memhp/ab/device.hpp"

#include <algorithm>

#include "memhp/error.hpp"

namespace memhp::ab {

DeviceKind parse_device(std::string_view text) {
    if (text == "dimm") return DeviceKind::Dimm;
    if (text == "virtio-mem") return DeviceKind::VirtioMem;
    if (text == "dax") return DeviceKind::Dax;
    throw UsageError("device '" + std::string(text) + "': the devices are dimm, virtio-mem and dax");
}

const char* device_name(DeviceKind d) {
    switch (d) {
        case DeviceKind::Dimm: return "dimm";
        case DeviceKind::VirtioMem: return "virtio-mem";
        case DeviceKind::Dax: return "dax";
    }
    return "?";
}

std::optional<std::string> device_unavailable(DeviceKind d) {
    if (d == DeviceKind::Dax)
        return "device=dax: dax/kmem hot-add is not in the lab yet (no pmem namespace or kmem support in this build); "
               "use device=dimm or device=virtio-mem";
    return std::nullopt;
}

std::string device_memmap_note(DeviceKind d) {
    if (d == DeviceKind::VirtioMem)
        return "virtio-mem never passes MHP_MEMMAP_ON_MEMORY (add_memory_driver_managed without it), so its memmap "
               "comes from the page allocator whatever memmap_on_memory says";
    return {};
}

namespace {

class DimmDevice final : public HotplugDevice {
public:
    DeviceKind kind() const override { return DeviceKind::Dimm; }
    void configure(lab::GuestConfig&, std::uint64_t, int) const override {}  // DIMM slots are always there
    lab::CycleRecord cycle(lab::MemoryLab& mem, const lab::CycleOptions& opts, int index) const override {
        return lab::run_cycle(mem, opts, index);
    }
    std::size_t ops_per_cycle(const lab::CycleRecord& c) const override { return c.dimms.size(); }
};

class VirtioMemDevice final : public HotplugDevice {
public:
    DeviceKind kind() const override { return DeviceKind::VirtioMem; }
    void configure(lab::GuestConfig& guest, std::uint64_t cycle_bytes, int node) const override {
        lab::VirtioMemConfig v;
        v.node = node;
        v.max_size = std::max<std::uint64_t>(cycle_bytes, std::uint64_t{128} << 20);
        guest.virtio_mem = {v};
    }
    lab::CycleRecord cycle(lab::MemoryLab& mem, const lab::CycleOptions& opts, int index) const override {
        return lab::run_cycle(mem, lab::virtio_mem_device(0), opts, index);
    }
    std::size_t ops_per_cycle(const lab::CycleRecord& c) const override {
        std::size_t n = 0;
        for (const auto& d : c.dimms) n += d.blocks.size();
        return n;
    }
};

}  // namespace

std::unique_ptr<HotplugDevice> make_device(DeviceKind d) {
    if (auto why = device_unavailable(d)) throw UsageError(*why);
    if (d == DeviceKind::VirtioMem) return std::make_unique<VirtioMemDevice>();
    return std::make_unique<DimmDevice>();
}

}  // namespace memhp::ab
