// SPDX-License-Identifier: Apache-2.0
// The kernel onlines hot-added memory itself (auto_online_blocks=online*,
// Debian 6.12's default and what real hosts run): memhp must report each
// online as its own record nested in its add, with the add's own time
// beside its inclusive time. And virtio-mem, which adds one 128 MiB block at
// a time through add_memory_driver_managed() and never uses the altmap.
// The exporter runs in the guest beside `memhp trace`: its histograms must
// count the nested onlines too.
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "prometheus_support.hpp"
#include "trace_support.hpp"

namespace memhp::vmtest {
namespace {

constexpr std::uint16_t kExporterPort = 10467;
constexpr std::size_t kVirtioBlocks = 8;  // 1 GiB plugged, 128 MiB blocks

lab::GuestConfig auto_config(const std::string& kernel, std::uint16_t host_port) {
    auto cfg = config(kernel, true);  // memmap_on_memory=1: virtio-mem must still not use the altmap
    cfg.online = lab::OnlineMode::Auto;
    cfg.virtio_mem.push_back({1, std::uint64_t{1} << 30, 0});
    cfg.tcp_forwards = {{host_port, kExporterPort}};
    return cfg;
}

// Sum of the samples of `name` whose label set holds every one of `labels`.
double sum_samples(const std::string& text, const std::string& name, const std::vector<std::string>& labels) {
    std::istringstream in(text);
    std::string line;
    double sum = 0;
    while (std::getline(in, line)) {
        if (!line.starts_with(name + "{") && !line.starts_with(name + " ")) continue;
        const auto sp = line.rfind(' ');
        const auto head = line.substr(0, sp);
        bool all = true;
        for (const auto& l : labels) all = all && head.find(l) != std::string::npos;
        if (all) sum += std::stod(line.substr(sp + 1));
    }
    return sum;
}

// memhp-exporter in the guest, reached through the QEMU port forward.
class GuestExporter {
public:
    GuestExporter(lab::Guest& g, std::uint16_t host_port) : agent_(g.agent()), host_port_(host_port) {
        const auto bin = (lab::default_agent_path().parent_path() / "memhp-exporter").string();
        pid_ = agent_.spawn({bin, "--listen", "0.0.0.0:" + std::to_string(kExporterPort)}, "/tmp/exporter.out");
        wait_for_output(agent_, pid_, "/tmp/exporter.out", "serving http://", "memhp-exporter");
    }
    ~GuestExporter() {
        try {
            agent_.signal(pid_, SIGTERM);
            (void)agent_.wait(pid_, std::chrono::seconds(10));
        } catch (...) {}
    }
    GuestExporter(const GuestExporter&) = delete;
    GuestExporter& operator=(const GuestExporter&) = delete;
    std::string metrics() const { return http_get("http://127.0.0.1:" + std::to_string(host_port_) + "/metrics"); }

private:
    lab::AgentClient& agent_;
    std::uint16_t host_port_;
    int pid_ = -1;
};

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

// 1 GiB into node 1 and back: 8 driver-managed adds, each with the
// kernel's online nested inside, counted alike by memhp trace and the exporter.
void plug_and_unplug_1g(lab::Guest& g, lab::MemoryLab& mem, std::uint16_t host_port) {
    constexpr auto n = kVirtioBlocks;
    // online_movable: the driver has to offline the blocks again to unplug.
    g.agent().write("/sys/devices/system/memory/auto_online_blocks", "online_movable");
    // Runs before the DIMM test of its suite: a DIMM the kernel onlined into
    // ZONE_NORMAL may not offline again, and would give node 1 memory.
    // (A memoryless node may have no sysfs directory at all.)
    if (const auto meminfo = g.agent().try_read("/sys/devices/system/node/node1/meminfo")) {
        std::smatch m;
        ASSERT_TRUE(std::regex_search(*meminfo, m, std::regex(R"(MemTotal:\s+(\d+) kB)"))) << *meminfo;
        ASSERT_EQ(m[1].str(), "0") << "node 1 must be memoryless here:\n" << *meminfo;
    }
    GuestExporter exporter(g, host_port);
    const auto before = exporter.metrics();
    const auto [plug, unplug, raw, ops] = traced_virtio_mem_plug(g, mem, n);
    EXPECT_EQ(plug.plugged, n * kBlock) << lab::to_json(plug).dump();
    EXPECT_EQ(plug.blocks_added.size(), n);
    EXPECT_EQ(plug.blocks_online, n) << "the kernel onlined every block";
    EXPECT_EQ(unplug.plugged, 0u) << lab::to_json(unplug).dump();
    EXPECT_EQ(unplug.blocks_removed.size(), n);
    check_nested_onlines(ops, n, raw);
    check_virtio_mem_adds(ops, n, raw);
    EXPECT_EQ(of_phase(ops, "offline").size(), n) << raw;
    ASSERT_EQ(of_phase(ops, "remove").size(), n) << raw;
    for (const auto& r : of_phase(ops, "remove")) {
        EXPECT_EQ(r["ret"], 0);
        EXPECT_EQ(r["memmap"]["buddy_pages"], kMemmapPages) << "the memmap goes back to the page allocator";
    }
    EXPECT_NE(raw.find("nested: " + std::to_string(n) + " online inside add"), std::string::npos) << raw;
    for (const auto& a : of_phase(ops, "add"))
        EXPECT_GE(a["free_bytes_consumed_inclusive"].get<std::uint64_t>(),
                  a["free_bytes_consumed"].get<std::uint64_t>());
    EXPECT_NE(raw.find("live: hot-plugged 0 B, memmap 0 B"), std::string::npos) << raw;

    // The exporter, an independent probe set: every nested online is in the
    // online histogram and the nested counter, every add in the add one.
    // Its counters are cumulative since it started, so compare to before.
    std::string after;
    for (int i = 0; i < 100; ++i) {  // the exporter's ring buffer may trail memhp trace's
        after = exporter.metrics();
        if (sum_samples(after, "memhp_operation_duration_seconds_count", {"phase=\"remove\""}) -
                sum_samples(before, "memhp_operation_duration_seconds_count", {"phase=\"remove\""}) >=
            n)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const auto delta = [&](const std::string& name, const std::vector<std::string>& l) {
        return sum_samples(after, name, l) - sum_samples(before, name, l);
    };
    const auto dn = static_cast<double>(n);
    EXPECT_EQ(delta("memhp_operation_duration_seconds_count", {"phase=\"online\""}), dn) << after;
    EXPECT_EQ(delta("memhp_operation_duration_seconds_count", {"phase=\"add\""}), dn) << after;
    EXPECT_EQ(delta("memhp_operation_duration_seconds_count", {"phase=\"offline\""}), dn) << after;
    EXPECT_EQ(delta("memhp_operation_duration_seconds_count", {"phase=\"remove\""}), dn) << after;
    EXPECT_EQ(delta("memhp_nested_operations_total", {"phase=\"online\"", "parent_phase=\"add\""}), dn) << after;
    // Its online time is the nested onlines' time, not zero and not the adds'.
    double traced_online_s = 0;
    for (const auto& on : of_phase(ops, "online")) traced_online_s += on["duration_ns"].get<double>() / 1e9;
    const double exported_online_s = delta("memhp_operation_duration_seconds_sum", {"phase=\"online\""});
    EXPECT_GT(exported_online_s, 0) << after;
    EXPECT_NEAR(exported_online_s, traced_online_s, 0.25 * traced_online_s + 0.002)
        << "two probe sets timing the same onlines";
    std::cerr << "[figures] exporter: " << delta("memhp_operation_duration_seconds_count", {"phase=\"online\""})
              << " onlines in the histogram, " << exported_online_s * 1e3 << " ms; memhp trace "
              << traced_online_s * 1e3 << " ms\n";
}

// One 128 MiB DIMM: one add with the kernel's online nested inside.
void dimm_add_with_nested_online(lab::Guest& g, lab::MemoryLab& mem) {
    // First the manual path in the same guest, for the range an add takes
    // when nothing is nested in it.
    constexpr auto knob = "/sys/devices/system/memory/auto_online_blocks";
    const std::string policy = g.online_policy();
    g.agent().write(knob, "offline");
    std::string manual_raw;
    const auto manual_ops = traced_with(
        g, {},
        [&] {
            for (int i = 1; i <= 3; ++i) {
                auto m = lab::run_cycle(mem, {kBlock, 1, lab::Zone::Movable}, i);
                if (!m.ok()) throw Error("manual cycle failed: " + lab::to_json(m).dump());
            }
        },
        &manual_raw);
    g.agent().write(knob, policy);
    std::vector<double> manual_add_ms;
    for (const auto& a : of_phase(manual_ops, "add")) {
        EXPECT_EQ(a.value("nested_ops", 0u), 0u) << "nothing nests in a manual add:\n" << a.dump();
        EXPECT_EQ(a["duration_ns"], a["inclusive_ns"]);
        manual_add_ms.push_back(ms(a["duration_ns"]));
    }
    ASSERT_EQ(manual_add_ms.size(), 3u) << manual_raw;
    EXPECT_EQ(of_phase(manual_ops, "online").size(), 3u) << manual_raw;

    std::string raw;
    lab::CycleOptions opts{kBlock, 1, lab::Zone::Movable};
    opts.kernel_onlines = true;
    lab::CycleRecord c;
    const auto ops = traced_with(
        g, {}, [&] { c = lab::run_cycle(mem, opts, 1); }, &raw);
    EXPECT_EQ(c.online_by, "kernel");
    EXPECT_TRUE(c.phase("add"));
    check_nested_onlines(ops, 1, raw);
    const auto add = of_phase(ops, "add")[0];
    // Its own time is an add's, not an add's plus an online's. A sanity
    // range, not a speed target: a 3x margin on the manual adds' extremes
    // (TCG on a shared host); billing the online to the add shows up as the
    // exact sums checked in check_nested_onlines.
    const auto [lo, hi] = std::minmax_element(manual_add_ms.begin(), manual_add_ms.end());
    const double own_ms = ms(add["duration_ns"]);
    EXPECT_GE(own_ms, *lo / 3) << "manual adds " << *lo << "-" << *hi << " ms";
    EXPECT_LE(own_ms, *hi * 3) << "manual adds " << *lo << "-" << *hi << " ms";
    std::cerr << "[figures] DIMM add: manual " << *lo << "-" << *hi << " ms; auto-online own " << own_ms
              << " ms, inclusive " << ms(add["inclusive_ns"]) << " ms\n";
    EXPECT_EQ(add["mode"], "altmap") << "a one-block DIMM with memmap_on_memory=1";
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

template <typename Derived>
class AutoSuite : public GuestSuite<Derived> {
public:
    static lab::GuestConfig ConfigFor(const std::string& kernel) {
        host_port_ = free_loopback_port();
        return auto_config(kernel, host_port_);
    }

protected:
    static inline std::uint16_t host_port_ = 0;
};

class AutoOnline612 : public AutoSuite<AutoOnline612> {
public:
    static lab::GuestConfig Config() { return ConfigFor("6.12"); }
};

// gtest runs a suite's tests in the order they are defined: the virtio-mem
// plug needs node 1 still memoryless, so it comes before the DIMM test.
TEST_F(AutoOnline612, TheKernelsPolicyIsLeftAlone) {
    EXPECT_TRUE(guest_->release().starts_with("6.12.")) << guest_->release();
    EXPECT_EQ(guest_->online_policy(), "online");
    EXPECT_TRUE(guest_->kernel_onlines());
}

TEST_F(AutoOnline612, VirtioMemPlugAddsPerBlockWithNestedOnlines) { plug_and_unplug_1g(*guest_, *mem_, host_port_); }

TEST_F(AutoOnline612, DimmAddHasItsOnlineNestedInside) { dimm_add_with_nested_online(*guest_, *mem_); }

class AutoOnline61 : public AutoSuite<AutoOnline61> {
public:
    static lab::GuestConfig Config() { return ConfigFor("6.1"); }
};

TEST_F(AutoOnline61, AnOfflinePolicyBecomesOnlineMovable) {
    EXPECT_TRUE(guest_->release().starts_with("6.1.")) << guest_->release();
    EXPECT_EQ(guest_->online_policy(), "online_movable");
}

TEST_F(AutoOnline61, VirtioMemPlugAddsPerBlockWithNestedOnlines) { plug_and_unplug_1g(*guest_, *mem_, host_port_); }

// Debian sid's 7.2: MHP_DEFAULT_ONLINE_TYPE_ONLINE_AUTO, the policy most
// new hosts boot with.
class AutoOnline72 : public AutoSuite<AutoOnline72> {
public:
    static lab::GuestConfig Config() { return ConfigFor("7.2"); }
};

TEST_F(AutoOnline72, TheKernelsPolicyIsLeftAlone) {
    EXPECT_TRUE(guest_->release().starts_with("7.2.")) << guest_->release();
    EXPECT_EQ(guest_->online_policy(), "online");
    EXPECT_TRUE(guest_->kernel_onlines());
}

TEST_F(AutoOnline72, VirtioMemPlugAddsPerBlockWithNestedOnlines) { plug_and_unplug_1g(*guest_, *mem_, host_port_); }

TEST_F(AutoOnline72, DimmAddHasItsOnlineNestedInside) { dimm_add_with_nested_online(*guest_, *mem_); }

}  // namespace
}  // namespace memhp::vmtest
