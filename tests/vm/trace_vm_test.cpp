// SPDX-License-Identifier: Apache-2.0
// memhp trace in real guests: the exact page counts, sources and locality
// of the memmap for the scenarios in kernel-paths.md, checked end to end
// (BPF in the guest -> ring buffer -> aggregator -> NDJSON).
#include <signal.h>

#include "trace_support.hpp"

namespace memhp::vmtest {
namespace {

std::string memhp_path() { return (lab::default_agent_path().parent_path() / "memhp").string(); }

// memhp doctor --json in the guest, as root; its exit code must be 0.
json Doctor(lab::Guest& g) {
    auto r = g.agent().exec({memhp_path(), "doctor", "--json"}, std::chrono::seconds(60));
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    auto j = json::parse(r.out);
    std::cerr << "[doctor] memhp doctor --json in the guest: " << j["elapsed_ms"] << " ms" << std::endl;
    return j;
}
json Check(const json& doctor, const std::string& id) {
    for (const auto& c : doctor["checks"])
        if (c["id"] == id) return c;
    ADD_FAILURE() << "no check " << id << " in " << doctor.dump();
    return json::object();
}
bool ProbeAttached(const json& doctor, const std::string& target, const std::string& kind) {
    const json probes = Check(doctor, "probes");  // kept: a range-for over a temporary's member dangles
    for (const auto& p : probes["data"]["list"])
        if (p["target"] == target && p["kind"] == kind) return p["attached"].get<bool>();
    ADD_FAILURE() << "no probe " << kind << " " << target;
    return false;
}

template <typename Fn>
std::vector<json> traced(lab::Guest& g, Fn&& body, std::string* raw = nullptr,
                         const std::vector<std::string>& extra = {}) {
    return traced_with(g, {}, std::forward<Fn>(body), raw, extra);
}

template <typename Derived>
class TraceSuite : public GuestSuite<Derived> {
protected:
    using B = GuestSuite<Derived>;
    static std::vector<json> OneBlockCycle(std::string* raw = nullptr, const std::vector<std::string>& extra = {}) {
        return traced_one_block_cycle(*B::guest_, *B::mem_, raw, {}, extra);
    }
    static std::vector<json> AddAndRemove(std::uint64_t size, std::string* raw) {
        return traced_add_and_remove(*B::guest_, *B::mem_, size, raw);
    }
    static void CheckCommon(const std::vector<json>& ops, const std::string& raw) {
        check_one_block_cycle(ops, raw);
        ASSERT_GE(of_phase(ops, "populate").size(), 1u) << raw;
    }
};

class Trace61Off : public TraceSuite<Trace61Off> {
public:
    static lab::GuestConfig Config() { return config("6.1", false); }
};
class Trace61On : public TraceSuite<Trace61On> {
public:
    static lab::GuestConfig Config() { return config("6.1", true); }
};
class Trace612On : public TraceSuite<Trace612On> {
public:
    static lab::GuestConfig Config() { return config("6.12", true); }
};

TEST_F(Trace61Off, MemmapFromThePageAllocatorOnNodeZeroIsRemote) {
    std::string raw;
    auto ops = OneBlockCycle(&raw);
    CheckCommon(ops, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "page_allocator");
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], kMemmapPages) << "one order-9 block";
    EXPECT_EQ(add["memmap"]["remote_pages"], kMemmapPages) << "node 1 is memoryless: the memmap sits on node 0";
    EXPECT_EQ(add["memmap"]["local_pages"], 0);
    // One PMD page for the direct map of the new GiB (init_memory_mapping);
    // the vmemmap's page tables exist already from boot memory. Slab pages
    // for the new sysfs nodes go to "other".
    EXPECT_EQ(add["memmap"]["pagetable_pages"], 1) << add.dump();
    EXPECT_GE(add["free_bytes_consumed"].get<std::uint64_t>(), (kMemmapPages + 1) * 4096);
    EXPECT_EQ(add["memmap_on_memory_unused"], false) << "memmap_on_memory is off: nothing to flag";
    // Every page-allocator page's node read both ways (sysfs memory-block map
    // in user space, page->flags in BPF) agrees: the remote 512 are on node 0 by both.
    EXPECT_GE(add["node_check"]["pages"].get<std::uint64_t>(), kMemmapPages + 1) << add.dump();
    EXPECT_EQ(add["node_check"]["mismatched"], 0) << add.dump();
    const auto remove = of_phase(ops, "remove")[0];
    EXPECT_EQ(remove["memmap"]["buddy_pages"], kMemmapPages) << "the order-9 block goes back";
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], 0);
}

TEST_F(Trace61On, MemmapCarvedFromTheAddedBlockIsLocal) {
    std::string raw;
    auto ops = OneBlockCycle(&raw);
    // memhp trace ran as root and dropped every capability once attached;
    // the counts below were taken after that.
    EXPECT_NE(raw.find("capabilities dropped (were =ep)"), std::string::npos) << raw;
    CheckCommon(ops, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["mode"], "altmap");
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0) << "the page allocator supplies only page tables";
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["remote_pages"], 0);
    // What the page allocator gives an altmap add on 6.1: one direct-map PMD
    // page (page tables) and slab pages for sysfs (other), no memmap.
    EXPECT_EQ(add["memmap"]["pagetable_pages"], 1) << add.dump();
    EXPECT_EQ(add["node_check"]["mismatched"], 0) << add.dump();
    EXPECT_LT(add["free_bytes_consumed"].get<std::uint64_t>(), kMemmapPages * 4096);
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], kMemmapPages);
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["altmap_pages"], kMemmapPages);
}

// The kprobe/kretprobe + raw_tp fallback, forced, on the same guest: the
// same operations and page counts as fentry/fexit + tp_btf.
TEST_F(Trace61Off, KprobeModeGivesTheSameCountsAsFentry) {
    std::string raw_fentry, raw_kprobe;
    auto fentry = OneBlockCycle(&raw_fentry, {"--attach-mode", "fentry"});
    auto kprobe = OneBlockCycle(&raw_kprobe, {"--attach-mode", "kprobe"});
    CheckCommon(fentry, raw_fentry);
    CheckCommon(kprobe, raw_kprobe);
    EXPECT_NE(raw_kprobe.find("kretprobe add_memory_resource: attached"), std::string::npos) << raw_kprobe;
    EXPECT_NE(raw_kprobe.find("raw_tp mm_page_alloc: attached"), std::string::npos) << raw_kprobe;
    EXPECT_EQ(raw_kprobe.find("fentry "), std::string::npos) << "nothing attached by fentry:\n" << raw_kprobe;
    EXPECT_NE(raw_fentry.find("fexit add_memory_resource: attached"), std::string::npos) << raw_fentry;
    for (const std::string phase : {"add", "populate", "online", "offline", "remove"})
        EXPECT_EQ(of_phase(fentry, phase).size(), of_phase(kprobe, phase).size()) << phase;
    for (const std::string phase : {"add", "remove"}) {
        auto f = of_phase(fentry, phase)[0], k = of_phase(kprobe, phase)[0];
        for (const char* key : {"altmap_pages", "buddy_pages", "pagetable_pages", "local_pages", "remote_pages"})
            EXPECT_EQ(f["memmap"][key], k["memmap"][key]) << phase << " " << key << "\n"
                                                          << f.dump() << "\n"
                                                          << k.dump();
        for (const char* key : {"nid", "start_pfn", "nr_pages", "ret", "mode"})
            EXPECT_EQ(f[key], k[key]) << phase << " " << key;
    }
    auto fo = of_phase(fentry, "online")[0], ko = of_phase(kprobe, "online")[0];
    for (const char* key : {"nid", "start_pfn", "nr_pages", "zone", "vmemmap_pages"})
        EXPECT_EQ(fo[key], ko[key]) << key;
    EXPECT_EQ(of_phase(kprobe, "add")[0]["memmap"]["buddy_pages"], kMemmapPages);
}

// memhp learns whether BPF trampolines work from its first fentry attach.
// A kernel that refuses them (ENOTSUPP, as on architectures without
// trampolines; MEMHP_TEST_REFUSE_FENTRY makes that attach fail so) sends auto
// mode back to the start on kprobes, with fresh programs and maps: the
// cycle must come out as exactly as on fentry.
TEST_F(Trace61On, RefusedTrampolinesFallBackToKprobesWithTheSameCounts) {
    std::string raw;
    auto ops = traced_one_block_cycle(*guest_, *mem_, &raw, {"MEMHP_TEST_REFUSE_FENTRY=1"});
    CheckCommon(ops, raw);
    EXPECT_NE(raw.find("refused BPF trampolines at the first fentry attach"), std::string::npos) << raw;
    EXPECT_NE(raw.find("kretprobe add_memory_resource: attached"), std::string::npos) << raw;
    for (const char* line : {"\n  fentry ", "\n  fexit "})
        EXPECT_EQ(raw.find(line), std::string::npos) << "nothing attached by trampolines:\n" << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages) << add.dump();
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages) << add.dump();
    EXPECT_EQ(of_phase(ops, "remove")[0]["memmap"]["altmap_pages"], kMemmapPages);
}

// An op whose exit never comes (a missed kretprobe: MEMHP_TEST_MISS_ONLINE_EXITS
// makes the probes ignore the first online's exit) must not swallow the
// task's later ops. The agent onlines both blocks of a 256 MiB DIMM from one
// thread: the second online begins at the depth of the first, finds it
// stale, counts it and is traced; every op after it is reported again, and
// the trace says it is incomplete.
TEST_F(Trace61Off, AMissedExitIsAgedOutAndLaterOpsAreStillReported) {
    std::string raw;
    auto ops = traced_with(
        *guest_, {"MEMHP_TEST_MISS_ONLINE_EXITS=1"},
        [] {
            auto c = lab::run_cycle(*mem_, {2 * kBlock, 1, lab::Zone::Movable}, 1);
            if (!c.ok()) throw Error("cycle failed: " + lab::to_json(c).dump());
        },
        &raw);
    EXPECT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    ASSERT_EQ(of_phase(ops, "online").size(), 1u) << "the second block's online, after the stale first:\n" << raw;
    EXPECT_EQ(of_phase(ops, "online")[0]["ret"], 0) << raw;
    EXPECT_EQ(of_phase(ops, "offline").size(), 2u) << raw;
    EXPECT_EQ(of_phase(ops, "remove").size(), 1u) << raw;
    EXPECT_NE(raw.find("stale ops aged out (missed exit 1,"), std::string::npos) << raw;
    const auto summary = lab::parse_trace_summary(raw);
    ASSERT_TRUE(summary) << raw;
    EXPECT_EQ(summary->stale_ops, 1u) << raw;
    EXPECT_TRUE(summary->lost()) << "a trace with a stale op is not clean";
}

// Not root: a clear refusal naming root or CAP_BPF + CAP_PERFMON, exit 1,
// on a kernel where everything else is in place.
TEST_F(Trace61On, NonRootTraceIsRefusedWithTheRemedy) {
    auto r = guest_->agent().exec({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   "--inh-caps=-all", "--bounding-set=-all", memhp_path(), "trace"},
                                  std::chrono::seconds(60));
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("needs root, or the capabilities CAP_BPF and CAP_PERFMON"), std::string::npos) << r.err;
}

// 6.1 uses the altmap only when one add covers exactly one memory block: a
// 1 GiB DIMM silently falls back to the page allocator. memhp flags it.
TEST_F(Trace61On, MultiBlockAddFallbackIsFlagged) {
    std::string raw;
    auto ops = AddAndRemove(8 * kBlock, &raw);
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], 0);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 8 * kMemmapPages);
    EXPECT_EQ(add["memmap_on_memory_unused"], true);
    EXPECT_NE(add["unused_reason"].get<std::string>().find("spans 8 memory blocks"), std::string::npos) << add.dump();
}

// memhp doctor reports what the lab knows of 6.1 booted with
// memmap_on_memory=1: fentry works, vmemmap_populate cannot be probed
// (populate is inferred), single-block memmap_on_memory only, and a DIMM's
// ACPI memory device once it is plugged.
TEST_F(Trace61On, DoctorReportsWhatThisKernelOffers) {
    const auto d = Doctor(*guest_);
    EXPECT_EQ(d["ok"], true) << d.dump(2);
    EXPECT_TRUE(Check(d, "kernel")["value"].get<std::string>().starts_with("6.1.")) << d.dump(2);
    for (const char* id : {"privileges", "btf", "memory_hotplug", "kallsyms", "ring_buffer", "fentry", "probes"})
        EXPECT_EQ(Check(d, id)["status"], "ok") << id << ": " << Check(d, id).dump();
    EXPECT_EQ(Check(d, "fentry")["data"]["works"], true);
    EXPECT_EQ(Check(d, "block_size")["data"]["bytes"], kBlock);
    EXPECT_EQ(Check(d, "memmap_on_memory")["data"]["value"], "Y");
    EXPECT_EQ(Check(d, "memmap_on_memory_split")["data"]["splits"], false);
    EXPECT_FALSE(ProbeAttached(d, "vmemmap_populate", "exit"));
    EXPECT_TRUE(ProbeAttached(d, "add_memory_resource", "exit"));
    EXPECT_EQ(Check(d, "populate")["data"]["direct"], false);
    // QEMU lists every DIMM slot as an ACPI memory device; _STA says which are plugged.
    EXPECT_EQ(Check(d, "devices")["data"]["acpi_memory_present"], 0) << d.dump(2);
    EXPECT_GE(Check(d, "devices")["data"]["acpi_memory"].get<int>(), 1);
    auto dimm = mem_->add_dimm(kBlock, 1);
    const auto with_dimm = Doctor(*guest_);
    mem_->remove(dimm);
    EXPECT_EQ(Check(with_dimm, "devices")["data"]["acpi_memory_present"], 1) << with_dimm.dump(2);
}

// 6.12: vmemmap_populate is attachable and multi-block adds split.
TEST_F(Trace612On, DoctorSeesPopulateAndTheSplit) {
    const auto d = Doctor(*guest_);
    EXPECT_EQ(d["ok"], true) << d.dump(2);
    EXPECT_TRUE(ProbeAttached(d, "vmemmap_populate", "exit"));
    EXPECT_EQ(Check(d, "populate")["data"]["direct"], true);
    EXPECT_EQ(Check(d, "memmap_on_memory_split")["data"]["splits"], true);
    EXPECT_EQ(Check(d, "nr_memmap_pages")["data"]["present"], true);
}

TEST_F(Trace612On, OneBlockCycleUsesAltmapAndPopulateIsTimedDirectly) {
    std::string raw;
    auto ops = OneBlockCycle(&raw);
    CheckCommon(ops, raw);
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], kMemmapPages);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0);
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages);
    for (const auto& p : of_phase(ops, "populate")) EXPECT_EQ(p["direct"], true) << p.dump();
    // As on 6.1: one direct-map PMD page, the rest slab (other).
    EXPECT_EQ(add["memmap"]["pagetable_pages"], 1) << add.dump();
    EXPECT_EQ(add["node_check"]["mismatched"], 0) << add.dump();
    // Read from memory_block->altmap (the 6.6+ layout, a CO-RE branch).
    EXPECT_EQ(of_phase(ops, "online")[0]["vmemmap_pages"], kMemmapPages);
    EXPECT_EQ(of_phase(ops, "offline")[0]["vmemmap_pages"], kMemmapPages);
}

// From 6.6 on every block of a multi-block add gets its own altmap.
TEST_F(Trace612On, OneGiBAddUsesAltmapForAllEightBlocks) {
    std::string raw;
    auto ops = AddAndRemove(8 * kBlock, &raw);
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["altmap_pages"], 8 * kMemmapPages);
    EXPECT_EQ(add["memmap"]["buddy_pages"], 0);
    EXPECT_EQ(add["memmap_on_memory_unused"], false);
    EXPECT_EQ(of_phase(ops, "populate").size(), 8u) << "vmemmap_populate once per 128 MiB block";
}

// An offline that cannot succeed (boot memory holding kernel data) is
// recorded with its errno, and tracing goes on.
TEST_F(Trace61Off, FailedOfflineIsRecordedWithErrno) {
    std::string raw;
    int guest_errno = 0;
    auto ops = traced(
        *guest_,
        [&] {
            try {
                guest_->agent().write("/sys/devices/system/memory/memory0/state", "offline");
            } catch (const lab::AgentError& e) {
                guest_errno = e.guest_errno();
            }
            auto c = lab::run_cycle(*mem_, {kBlock, 1, lab::Zone::Movable}, 1);  // still traced afterwards
            if (!c.ok()) throw Error("cycle after the failed offline failed");
        },
        &raw);
    ASSERT_NE(guest_errno, 0) << "offlining boot memory block 0 should fail";
    auto offlines = of_phase(ops, "offline");
    ASSERT_EQ(offlines.size(), 2u) << raw;
    EXPECT_EQ(offlines[0]["ret"], -guest_errno) << offlines[0].dump();
    EXPECT_GT(offlines[0]["duration_ns"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(offlines[1]["ret"], 0);
    EXPECT_EQ(of_phase(ops, "add").size(), 1u);
    EXPECT_NE(raw.find("failures: offline errno " + std::to_string(guest_errno)), std::string::npos) << raw;
}

// Last in its suite: it may leave a ZONE_NORMAL DIMM behind.
// A node-1 page checked both ways. Node-0 pages read node 0 from page->flags
// whatever NODES_SHIFT the BPF side derives, so they alone prove little.
// With a first DIMM onlined to ZONE_NORMAL, node 1 can serve GFP_KERNEL and
// a second DIMM's memmap comes from node 1 itself.
TEST_F(Trace61Off, NodeOnePagesAgreeBothWays) {
    auto first = mem_->add_dimm(kBlock, 1);
    mem_->online(first, lab::Zone::Normal);
    std::string raw;
    auto ops = traced(
        *guest_,
        [&] {
            auto second = mem_->add_dimm(kBlock, 1);
            mem_->remove(second);
        },
        &raw);
    ASSERT_EQ(of_phase(ops, "add").size(), 1u) << raw;
    const auto add = of_phase(ops, "add")[0];
    EXPECT_EQ(add["memmap"]["buddy_pages"], kMemmapPages) << add.dump();
    EXPECT_EQ(add["memmap"]["local_pages"], kMemmapPages) << "node 1 has ZONE_NORMAL memory now: " << add.dump();
    EXPECT_EQ(add["memmap"]["pagetable_pages"], 0) << "the first DIMM's direct-map page table covers this GiB";
    EXPECT_GE(add["node_check"]["pages"].get<std::uint64_t>(), kMemmapPages) << add.dump();
    EXPECT_EQ(add["node_check"]["mismatched"], 0) << add.dump();
    try {  // leave the guest as found if the kernel lets us; ZONE_NORMAL may refuse to go offline
        mem_->offline(first);
        mem_->remove(first);
    } catch (const std::exception& e) {
        std::cerr << "first DIMM stays: " << e.what() << std::endl;
    }
}

}  // namespace
}  // namespace memhp::vmtest
