// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/device.hpp"

#include <algorithm>

#include "memhp/error.hpp"
#include "memhp/lab/dax.hpp"

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
    (void)d;  // every device runs in this build
    return std::nullopt;
}

std::string device_memmap_note(DeviceKind d) {
    if (d == DeviceKind::VirtioMem)
        return "virtio-mem never passes MHP_MEMMAP_ON_MEMORY (add_memory_driver_managed without it), so its memmap "
               "comes from the page allocator whatever memmap_on_memory says";
    if (d == DeviceKind::Dax)
        return "dax/kmem puts the memmap on the device only where the kernel has the dax device's memmap_on_memory "
               "attribute (Linux 6.8 and later) and it is set (mmo=on sets it); elsewhere from the page allocator";
    return {};
}

namespace {

class DimmDevice final : public HotplugDevice {
public:
    DeviceKind kind() const override { return DeviceKind::Dimm; }
    void configure(lab::GuestConfig&, std::uint64_t, int) const override {}  // DIMM slots are always there
    lab::CycleRecord cycle(lab::Machine&, lab::MemoryLab& mem, const lab::CycleOptions& opts, int index) override {
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
    lab::CycleRecord cycle(lab::Machine&, lab::MemoryLab& mem, const lab::CycleOptions& opts, int index) override {
        return lab::run_cycle(mem, lab::virtio_mem_device(0), opts, index);
    }
    std::size_t ops_per_cycle(const lab::CycleRecord& c) const override {
        std::size_t n = 0;
        for (const auto& d : c.dimms) n += d.blocks.size();
        return n;
    }
};

// A memmap= pmem range on node 1, made devdax by ndctl in the first cycle
// (lab/dax.hpp); each cycle gives it to kmem (the add, which onlines it)
// and takes it back (offline, then the unbind from kmem: the remove).
class DaxDevice final : public HotplugDevice {
public:
    explicit DaxDevice(std::optional<bool> mmo) : mmo_(mmo) {}
    DeviceKind kind() const override { return DeviceKind::Dax; }
    void configure(lab::GuestConfig& guest, std::uint64_t cycle_bytes, int) const override {
        lab::configure_dax_guest(guest, cycle_bytes);
    }
    lab::CycleRecord cycle(lab::Machine& guest, lab::MemoryLab& mem, const lab::CycleOptions& opts,
                           int index) override {
        lab::CycleDevice dev;
        dev.name = "dax";
        dev.onlines_in_add = true;
        dev.add = [&](lab::MemoryLab&, const lab::CycleOptions& o) {
            if (!dax_) dax_ = std::make_unique<lab::DaxLab>(guest, o.timeout);
            // The attribute only where the kernel has it: mmo=off on 6.1 is
            // the page allocator anyway; mmo=on there is refused by DaxLab.
            const auto attr = mmo_ && (*mmo_ || dax_->has_memmap_on_memory_attr()) ? mmo_ : std::nullopt;
            const auto a = dax_->add(attr, o.zone);
            lab::Dimm d;
            d.id = dax_->device();
            d.node = dax_->target_node();
            d.addr = dax_->start();
            d.size = dax_->size();
            d.blocks = a.blocks;
            return std::vector<lab::Dimm>{d};
        };
        dev.remove = [&](lab::MemoryLab&, const lab::Dimm&, const lab::CycleOptions&) {
            (void)dax_->remove();
            return true;
        };
        return lab::run_cycle(mem, dev, opts, index);
    }
    std::size_t ops_per_cycle(const lab::CycleRecord& c) const override {
        return c.dimms.size();
    }  // one kmem add per range

private:
    std::optional<bool> mmo_;
    std::unique_ptr<lab::DaxLab> dax_;
};

}  // namespace

std::unique_ptr<HotplugDevice> make_device(DeviceKind d, std::optional<bool> mmo) {
    if (auto why = device_unavailable(d)) throw UsageError(*why);
    if (d == DeviceKind::VirtioMem) return std::make_unique<VirtioMemDevice>();
    if (d == DeviceKind::Dax) return std::make_unique<DaxDevice>(mmo);
    return std::make_unique<DimmDevice>();
}

}  // namespace memhp::ab
