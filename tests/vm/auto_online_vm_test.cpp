// The kernel onlines hot-added memory itself (auto_online_blocks=online*,
// Debian 6.12's default and what real hosts run): memhp must report each
// online as its own record nested in its add, with the add's own time
// beside its inclusive time. And virtio-mem, which adds one 128 MiB block at
// a time through add_memory_driver_managed() and never uses the altmap.
#include <iostream>
#include <nlohmann/json.hpp>

#include "trace_support.hpp"

namespace memhp::vmtest {
namespace {

lab::GuestConfig auto_config(const std::string& kernel) {
    auto cfg = config(kernel, true);  // memmap_on_memory=1: virtio-mem must still not use the altmap
    cfg.online = lab::OnlineMode::Auto;
    cfg.virtio_mem.push_back({1, std::uint64_t{1} << 30, 0});
    return cfg;
}

double ms(const json& ns) { return ns.get<double>() / 1e6; }

// Each online nested in exactly one add, one to one, same block.
void check_nested_onlines(const std::vector<json>& ops, std::size_t blocks, const std::string& raw) {
    const auto adds = of_phase(ops, "add");
    const auto onlines = of_phase(ops, "online");
    ASSERT_EQ(adds.size(), blocks) << raw;
    ASSERT_EQ(onlines.size(), blocks) << raw;
    for (const auto& on : onlines) {
        const auto parent = on.value("parent_op_id", std::uint64_t{0});
        ASSERT_NE(parent, 0u) << "online not nested in its add:\n" << on.dump();
        EXPECT_EQ(on["parent_phase"], "add");
        EXPECT_EQ(on["ret"], 0);
        EXPECT_GT(on["duration_ns"].get<std::uint64_t>(), 0u);
        const json* add = nullptr;
        for (const auto& a : adds)
            if (a["op_id"] == parent) add = &a;
        ASSERT_TRUE(add) << "no add with op id " << parent << ":\n" << raw;
        EXPECT_EQ((*add)["start_pfn"], on["start_pfn"]);
        EXPECT_EQ((*add)["nested_ops"], 1u);
        const auto own = (*add)["duration_ns"].get<std::uint64_t>();
        const auto incl = (*add)["inclusive_ns"].get<std::uint64_t>();
        const auto nested = (*add)["nested_ns"].get<std::uint64_t>();
        EXPECT_EQ(own + nested, incl);
        EXPECT_GT(own, 0u);
        // The nested time is the online's, to the nanosecond (one end time).
        EXPECT_EQ(nested, on["duration_ns"].get<std::uint64_t>());
        std::cerr << "[figures] add own " << ms((*add)["duration_ns"]) << " ms, inclusive "
                  << ms((*add)["inclusive_ns"]) << " ms, nested online " << ms(on["duration_ns"]) << " ms\n";
    }
}

void check_virtio_mem_adds(const std::vector<json>& ops, std::size_t blocks, const std::string& raw) {
    std::uint64_t buddy = 0, free_bytes = 0;
    for (const auto& a : of_phase(ops, "add")) {
        EXPECT_EQ(a["caller"], "driver_managed") << a.dump();
        EXPECT_EQ(a["nr_pages"], kBlockPages) << "one memory block per add";
        EXPECT_EQ(a["nid"], 1);
        EXPECT_EQ(a["mode"], "page_allocator");
        EXPECT_EQ(a["memmap"]["altmap_pages"], 0u);
        EXPECT_EQ(a["memmap"]["buddy_pages"], kMemmapPages);
        EXPECT_EQ(a["memmap"]["remote_pages"], kMemmapPages) << "memoryless node 1: the memmap sits on node 0";
        EXPECT_EQ(a["memmap_on_memory_unused"], true);
        EXPECT_NE(a.value("unused_reason", std::string()).find("driver-managed"), std::string::npos) << a.dump();
        buddy += a["memmap"]["buddy_pages"].get<std::uint64_t>();
        free_bytes += a["free_bytes_consumed"].get<std::uint64_t>();
    }
    EXPECT_EQ(buddy, blocks * kMemmapPages) << raw;
    std::cerr << "[figures] virtio-mem " << blocks << " blocks: memmap " << buddy * 4096 / blocks
              << " bytes per block from the page allocator, free memory consumed " << free_bytes / blocks
              << " bytes per block\n";
}

void plug_and_unplug_512m(lab::Guest& g, lab::MemoryLab& mem) {
    // online_movable: the driver has to offline the blocks again to unplug.
    g.agent().write("/sys/devices/system/memory/auto_online_blocks", "online_movable");
    lab::GuestTrace trace(g);
    const auto plug = mem.resize_virtio_mem(0, 512 * kMiB);
    const auto unplug = mem.resize_virtio_mem(0, 0);
    // The driver unplugs from the device, then removes the block: the last
    // remove may still be on its way to the tracer.
    (void)trace.take([](const std::vector<json>& o) { return lab::count_phase(o, "remove") >= 4; },
                     std::chrono::seconds(30));
    const std::string raw = trace.stop();
    const auto ops = lab::parse_ops(raw);
    EXPECT_EQ(plug.plugged, 512 * kMiB) << lab::to_json(plug).dump();
    EXPECT_EQ(plug.blocks_added.size(), 4u);
    EXPECT_EQ(plug.blocks_online, 4u) << "the kernel onlined every block";
    EXPECT_EQ(unplug.plugged, 0u) << lab::to_json(unplug).dump();
    EXPECT_EQ(unplug.blocks_removed.size(), 4u);
    check_nested_onlines(ops, 4, raw);
    check_virtio_mem_adds(ops, 4, raw);
    EXPECT_EQ(of_phase(ops, "offline").size(), 4u) << raw;
    ASSERT_EQ(of_phase(ops, "remove").size(), 4u) << raw;
    for (const auto& r : of_phase(ops, "remove")) {
        EXPECT_EQ(r["ret"], 0);
        EXPECT_EQ(r["memmap"]["buddy_pages"], kMemmapPages) << "the memmap goes back to the page allocator";
    }
    EXPECT_NE(raw.find("nested: 4 online inside add"), std::string::npos) << raw;
    for (const auto& a : of_phase(ops, "add"))
        EXPECT_GE(a["free_bytes_consumed_inclusive"].get<std::uint64_t>(),
                  a["free_bytes_consumed"].get<std::uint64_t>());
    EXPECT_NE(raw.find("live: hot-plugged 0 B, memmap 0 B"), std::string::npos) << raw;
}

class AutoOnline612 : public GuestSuite<AutoOnline612> {
public:
    static lab::GuestConfig Config() { return auto_config("6.12"); }
};

TEST_F(AutoOnline612, TheKernelsPolicyIsLeftAlone) {
    EXPECT_TRUE(guest_->release().starts_with("6.12.")) << guest_->release();
    EXPECT_EQ(guest_->online_policy(), "online");
    EXPECT_TRUE(guest_->kernel_onlines());
}

TEST_F(AutoOnline612, DimmAddHasItsOnlineNestedInside) {
    std::string raw;
    lab::CycleOptions opts{kBlock, 1, lab::Zone::Movable};
    opts.kernel_onlines = true;
    lab::CycleRecord c;
    const auto ops = traced_with(
        *guest_, {}, [&] { c = lab::run_cycle(*mem_, opts, 1); }, &raw);
    EXPECT_EQ(c.online_by, "kernel");
    EXPECT_TRUE(c.phase("add"));
    check_nested_onlines(ops, 1, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "altmap") << "a one-block DIMM on 6.12 with memmap_on_memory=1";
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages);
    const auto online = of_phase(ops, "online")[0];
    EXPECT_EQ(online["vmemmap_pages"], kMemmapPages);
    if (c.ok()) {
        EXPECT_EQ(of_phase(ops, "remove").size(), 1u) << raw;
    } else {
        // "online" puts the block in the kernel zone, where offline may fail:
        // then the record says why and memhp counted it as a failed offline.
        ASSERT_TRUE(c.phase("offline")) << lab::to_json(c).dump(2);
        std::cerr << "[note] offline after auto-online (zone " << c.zone << ") failed: " << c.phase("offline")->error
                  << "\n";
    }
}

TEST_F(AutoOnline612, VirtioMemPlugAddsPerBlockWithNestedOnlines) { plug_and_unplug_512m(*guest_, *mem_); }

class AutoOnline61 : public GuestSuite<AutoOnline61> {
public:
    static lab::GuestConfig Config() { return auto_config("6.1"); }
};

TEST_F(AutoOnline61, AnOfflinePolicyBecomesOnlineMovable) {
    EXPECT_TRUE(guest_->release().starts_with("6.1.")) << guest_->release();
    EXPECT_EQ(guest_->online_policy(), "online_movable");
}

TEST_F(AutoOnline61, VirtioMemPlugAddsPerBlockWithNestedOnlines) { plug_and_unplug_512m(*guest_, *mem_); }

}  // namespace
}  // namespace memhp::vmtest
