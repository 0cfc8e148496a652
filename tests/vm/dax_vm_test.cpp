// SPDX-License-Identifier: Apache-2.0
// dax/kmem: a 1 GiB devdax device (memmap= pmem on node 1, made devdax by
// ndctl) given to kmem as system RAM and taken back, traced by memhp. One
// guest per kernel, booted with memory_hotplug.memmap_on_memory=1, serves
// both settings of the dax device's memmap_on_memory attribute.
//
// kmem adds each dax range with one add_memory_driver_managed() call and
// removes it with one remove_memory(): memhp sees one add and one remove of
// 8 blocks. With the attribute set, the kernel (>= 6.8) splits the add into
// one arch_add_memory() per block, each with its own 512-page altmap: memhp
// counts 8 populate records in altmap mode and 8 x 512 altmap pages.
#include <iostream>

#include "memhp/lab/dax.hpp"
#include "trace_support.hpp"

namespace memhp::vmtest {
namespace {

constexpr std::size_t kDaxBlocks = 8;  // 1 GiB
constexpr std::uint64_t kDaxBytes = kDaxBlocks * kBlock;

lab::GuestConfig dax_config(const std::string& kernel) {
    auto cfg = config(kernel, true);  // the global switch: without it the attribute cannot be set
    lab::configure_dax_guest(cfg, kDaxBytes);
    return cfg;
}

struct TracedKmem {
    lab::KmemAdd add;
    lab::KmemRemove remove;
    lab::MemorySnapshot before, after_add, after_remove;
    std::vector<json> ops;
    std::string raw;
};

TracedKmem traced_kmem_cycle(lab::Guest& g, lab::MemoryLab& mem, lab::DaxLab& dax, std::optional<bool> mmo) {
    TracedKmem t;
    lab::GuestTrace trace(g);
    t.before = mem.snapshot();
    t.add = dax.add(mmo);
    t.after_add = mem.snapshot();
    t.remove = dax.remove();
    t.after_remove = mem.snapshot();
    (void)trace.take([](const std::vector<json>& o) { return lab::count_phase(o, "remove") >= 1; },
                     std::chrono::seconds(60));
    t.raw = trace.stop();
    t.ops = lab::parse_ops(t.raw);
    return t;
}

double ms(const json& ns) { return ns.get<double>() / 1e6; }

// What every kmem cycle shows, whatever the memmap's source.
json check_cycle(const TracedKmem& t, const std::string& label) {
    const auto& raw = t.raw;
    EXPECT_EQ(t.add.blocks.size(), kDaxBlocks);
    const auto adds = of_phase(t.ops, "add");
    EXPECT_EQ(adds.size(), 1u) << "kmem adds a dax range with one add_memory_driver_managed():\n" << raw;
    EXPECT_EQ(of_phase(t.ops, "online").size(), kDaxBlocks) << raw;
    EXPECT_EQ(of_phase(t.ops, "offline").size(), kDaxBlocks) << raw;
    const auto removes = of_phase(t.ops, "remove");
    EXPECT_EQ(removes.size(), 1u) << "kmem removes a dax range with one remove_memory():\n" << raw;
    if (adds.size() != 1 || removes.size() != 1) return json::object();
    const auto& a = adds[0];
    EXPECT_EQ(a["caller"], "driver_managed") << a.dump();
    EXPECT_EQ(a["nid"], 1) << "the dax range is node 1's (SRAT)";
    EXPECT_EQ(a["nr_pages"], kDaxBlocks * kBlockPages);
    EXPECT_EQ(a["ret"], 0);
    EXPECT_EQ(removes[0]["ret"], 0);
    EXPECT_EQ(removes[0]["nr_pages"], kDaxBlocks * kBlockPages);
    for (const auto& on : of_phase(t.ops, "online")) {
        EXPECT_EQ(on["nid"], 1);
        EXPECT_EQ(on["zone"], "Movable");
    }
    // Node 1 had no memory before, has the 1 GiB (less the memmap kept on
    // it) while kmem holds it, and none after.
    EXPECT_EQ(t.before.node(1).total_kb, 0u);
    EXPECT_EQ(t.after_remove.node(1).total_kb, 0u);
    EXPECT_EQ(t.after_add.blocks - t.before.blocks, kDaxBlocks);
    EXPECT_EQ(t.after_remove.blocks, t.before.blocks);
    EXPECT_NE(raw.find("live: hot-plugged 0 B, memmap 0 B"), std::string::npos) << raw;
    std::cout << "[figures] " << label << ": kmem add " << t.add.add_s * 1e3 / kDaxBlocks << " ms/block host wall ("
              << ms(a["duration_ns"]) / kDaxBlocks << " ms/block traced), online " << t.add.online_s * 1e3 / kDaxBlocks
              << " ms/block, offline " << t.remove.offline_s * 1e3 / kDaxBlocks << " ms/block, remove "
              << t.remove.remove_s * 1e3 / kDaxBlocks << " ms/block; free memory consumed by the add "
              << a["free_bytes_consumed"].get<std::uint64_t>() / 1024 << " KiB per GiB; MemFree "
              << (static_cast<long long>(t.after_add.mem_free_kb) - static_cast<long long>(t.before.mem_free_kb))
              << " kB over the cycle's add+online" << std::endl;
    return a;
}

void check_altmap(const TracedKmem& t, const json& a) {
    EXPECT_EQ(a["mode"], "altmap") << a.dump();
    EXPECT_EQ(a["memmap"]["altmap_pages"], kDaxBlocks * kMemmapPages) << a.dump();
    EXPECT_EQ(a["memmap"]["buddy_pages"], 0u) << a.dump();
    EXPECT_EQ(a["memmap"]["remote_pages"], 0u) << "the altmap is on node 1 itself:\n" << a.dump();
    EXPECT_EQ(a["memmap"]["local_pages"], kDaxBlocks * kMemmapPages) << a.dump();
    EXPECT_EQ(a["memmap_on_memory_unused"], false) << a.dump();
    EXPECT_EQ(a["mhp_flags"].get<std::uint64_t>() & 2u, 2u) << "kmem passed MHP_MEMMAP_ON_MEMORY:\n" << a.dump();
    // One altmap per block: each block's vmemmap populated from its own.
    const auto pops = of_phase(t.ops, "populate");
    ASSERT_EQ(pops.size(), kDaxBlocks) << t.raw;
    for (const auto& p : pops) {
        EXPECT_EQ(p["mode"], "altmap") << p.dump();
        EXPECT_EQ(p["nr_pages"], kBlockPages) << p.dump();
        EXPECT_EQ(p["op_id"], a["op_id"]);
    }
    // The online of a block with its memmap on it leaves those pages out.
    for (const auto& on : of_phase(t.ops, "online")) EXPECT_EQ(on["vmemmap_pages"], kMemmapPages) << on.dump();
    // Node 1 got the memory less its memmap: 8 x 2 MiB stay in the altmaps.
    EXPECT_EQ(t.after_add.node(1).total_kb, (kDaxBytes - kDaxBlocks * kMemmapPages * 4096) / 1024);
}

void check_page_allocator(const TracedKmem& t, const json& a, bool attribute_exists) {
    EXPECT_EQ(a["mode"], "page_allocator") << a.dump();
    EXPECT_EQ(a["memmap"]["altmap_pages"], 0u) << a.dump();
    EXPECT_EQ(a["memmap"]["buddy_pages"], kDaxBlocks * kMemmapPages) << a.dump();
    EXPECT_EQ(a["memmap"]["remote_pages"], kDaxBlocks * kMemmapPages)
        << "node 1 has no memory of its own: the memmap comes from node 0:\n"
        << a.dump();
    EXPECT_EQ(a["mhp_flags"].get<std::uint64_t>() & 2u, 0u) << a.dump();
    EXPECT_EQ(a["memmap_on_memory_unused"], true) << a.dump();
    const std::string reason = a.value("unused_reason", std::string());
    EXPECT_NE(reason.find("driver-managed add"), std::string::npos) << a.dump();
    if (attribute_exists) {
        EXPECT_NE(reason.find("memmap_on_memory attribute"), std::string::npos) << a.dump();
    }
    // 16 MiB of memmap per GiB, from free memory, plus a few page-table pages.
    const auto consumed = a["free_bytes_consumed"].get<std::uint64_t>();
    EXPECT_GE(consumed, 16 * kMiB) << a.dump();
    EXPECT_LE(consumed, 17 * kMiB) << a.dump();
    const auto removes = of_phase(t.ops, "remove");
    if (!removes.empty()) {
        EXPECT_EQ(removes[0]["memmap"]["buddy_pages"], kDaxBlocks * kMemmapPages) << "the memmap goes back";
    }
    EXPECT_EQ(t.after_add.node(1).total_kb, kDaxBytes / 1024);
}

// The kernel's own count (/proc/vmstat nr_memmap_pages, >= 6.11) moves by
// memhp's altmap + page-allocator pages at the add and back at the remove.
// The counter also holds device_dax's memmap of the device's ZONE_DEVICE
// pages (ndctl's default --map=dev: on the pmem itself), which goes when the
// device leaves device_dax for kmem and comes back when it returns: so the
// add is compared from the counter as the add found it (memhp's record), and
// the snapshots around the whole cycle with each other.
void check_kernel_counter(const TracedKmem& t, const json& a) {
    ASSERT_TRUE(t.before.kernel_memmap_pages) << "nr_memmap_pages is in /proc/vmstat from 6.11 on";
    const auto memhp =
        a["memmap"]["altmap_pages"].get<std::uint64_t>() + a["memmap"]["buddy_pages"].get<std::uint64_t>();
    ASSERT_TRUE(a.contains("kernel_memmap_pages")) << a.dump();
    const auto& k = a["kernel_memmap_pages"];
    EXPECT_EQ(k["delta"], static_cast<std::int64_t>(memhp)) << a.dump();
    EXPECT_EQ(k["matches"], true) << a.dump();
    const auto r = of_phase(t.ops, "remove").at(0);
    ASSERT_TRUE(r.contains("kernel_memmap_pages")) << r.dump();
    EXPECT_EQ(r["kernel_memmap_pages"]["delta"], -static_cast<std::int64_t>(memhp)) << r.dump();
    EXPECT_EQ(r["kernel_memmap_pages"]["after"], k["before"]) << "back to where the add found it:\n" << r.dump();
    EXPECT_EQ(r["kernel_memmap_pages"]["matches"], true) << r.dump();
    EXPECT_EQ(t.after_add.kernel_memmap_pages, k["after"].get<std::uint64_t>()) << a.dump();
    EXPECT_EQ(t.after_remove.kernel_memmap_pages, t.before.kernel_memmap_pages);
    // device_dax's own memmap: 64 bytes per 4 KiB page of the namespace.
    const auto device_dax = *t.before.kernel_memmap_pages - k["before"].get<std::uint64_t>();
    EXPECT_GT(device_dax, 0u);
    std::cout << "[figures] nr_memmap_pages +" << k["delta"] << " at the kmem add (memhp " << memhp << "), "
              << device_dax << " pages of device_dax's memmap released before it and restored after the remove"
              << std::endl;
}

template <typename Derived>
class DaxSuite : public GuestSuite<Derived> {
protected:
    using B = GuestSuite<Derived>;
    static void SetUpTestSuite() {
        const auto t0 = std::chrono::steady_clock::now();
        B::SetUpTestSuite();
        suite_t0_ = t0;
        if (!B::guest_) return;
        try {
            dax_ = std::make_unique<lab::DaxLab>(*B::guest_);
        } catch (const std::exception& e) {
            dax_error_ = e.what();
        }
    }
    static void TearDownTestSuite() {
        dax_.reset();
        B::TearDownTestSuite();
        std::cout << "[figures] suite wall time "
                  << std::chrono::duration<double>(std::chrono::steady_clock::now() - suite_t0_).count() << " s"
                  << std::endl;
    }
    void SetUp() override {
        B::SetUp();
        ASSERT_TRUE(dax_) << "dax setup failed: " << dax_error_;
    }
    static void CheckDevice() {
        EXPECT_EQ(dax_->target_node(), 1);
        EXPECT_EQ(dax_->blocks().size(), kDaxBlocks)
            << "dax device " << dax_->device() << " " << dax_->size() << " bytes at " << dax_->start();
        std::cout << "[dax] " << dax_->namespace_name() << " -> " << dax_->device() << ", " << dax_->size()
                  << " bytes at 0x" << std::hex << dax_->start() << std::dec << ", kernel " << B::guest_->release()
                  << "\n[dax] ndctl said: " << dax_->ndctl_json() << std::endl;
    }
    static inline std::unique_ptr<lab::DaxLab> dax_;
    static inline std::string dax_error_;
    static inline std::chrono::steady_clock::time_point suite_t0_;
};

// ---- 6.12 and 7.2: the attribute exists --------------------------------

template <typename Derived>
class DaxWithAttribute : public DaxSuite<Derived> {
protected:
    using S = DaxSuite<Derived>;
    static void AttributeSet() {
        S::CheckDevice();
        ASSERT_TRUE(S::dax_->has_memmap_on_memory_attr());
        const auto t = traced_kmem_cycle(*S::guest_, *S::mem_, *S::dax_, true);
        const auto a = check_cycle(t, S::guest_->release() + " attribute set");
        if (a.empty()) return;
        check_altmap(t, a);
        check_kernel_counter(t, a);
    }
    static void AttributeUnset() {
        const auto t = traced_kmem_cycle(*S::guest_, *S::mem_, *S::dax_, false);
        const auto a = check_cycle(t, S::guest_->release() + " attribute unset");
        if (a.empty()) return;
        check_page_allocator(t, a, true);
        check_kernel_counter(t, a);
    }
};

class Dax612 : public DaxWithAttribute<Dax612> {
public:
    static lab::GuestConfig Config() { return dax_config("6.12"); }
};
TEST_F(Dax612, AttributeSetPutsEachBlocksMemmapOnTheDevice) {
    EXPECT_TRUE(guest_->release().starts_with("6.12.")) << guest_->release();
    AttributeSet();
}
TEST_F(Dax612, AttributeUnsetTakesTheMemmapFromNode0) { AttributeUnset(); }

class Dax72 : public DaxWithAttribute<Dax72> {
public:
    static lab::GuestConfig Config() { return dax_config("7.2"); }
};
TEST_F(Dax72, AttributeSetPutsEachBlocksMemmapOnTheDevice) {
    EXPECT_TRUE(guest_->release().starts_with("7.2.")) << guest_->release();
    AttributeSet();
}
TEST_F(Dax72, AttributeUnsetTakesTheMemmapFromNode0) { AttributeUnset(); }

// ---- 6.1: no attribute, kmem never asks for the altmap -----------------

class Dax61 : public DaxSuite<Dax61> {
public:
    static lab::GuestConfig Config() { return dax_config("6.1"); }
};
TEST_F(Dax61, NoAttributeAndThePageAllocator) {
    EXPECT_TRUE(guest_->release().starts_with("6.1.")) << guest_->release();
    CheckDevice();
    EXPECT_FALSE(dax_->has_memmap_on_memory_attr()) << "the dax attribute arrived in 6.8";
    try {
        (void)dax_->add(true);
        ADD_FAILURE() << "asking 6.1 for the dax memmap_on_memory attribute must be refused";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("arrived in Linux 6.8"), std::string::npos) << e.what();
    }
    const auto t = traced_kmem_cycle(*guest_, *mem_, *dax_, std::nullopt);
    const auto a = check_cycle(t, guest_->release() + " no attribute");
    if (a.empty()) return;
    check_page_allocator(t, a, false);
    EXPECT_FALSE(t.before.kernel_memmap_pages) << "nr_memmap_pages arrived in 6.11";
}

}  // namespace
}  // namespace memhp::vmtest
