// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/attach_plan.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "memhp/collector/probes.hpp"
#include "memhp/error.hpp"

namespace memhp::collector {
namespace {

using ::testing::HasSubstr;

const ProbeSpec kAddEntry{"add_memory_resource", ProbeKind::Entry, true};
const ProbeSpec kAddExit{"add_memory_resource", ProbeKind::Exit, true};
const ProbeSpec kPopulateExit{"vmemmap_populate", ProbeKind::Exit, false};
const ProbeSpec kPageAlloc{"mm_page_alloc", ProbeKind::Tracepoint, false};

// Debian 6.1 as seen from user space: everything in BTF and ftrace-able but
// vmemmap_populate (in BTF, __meminit notrace), trampolines work.
KernelFeatures debian61() {
    KernelFeatures k;
    k.btf_functions = {"add_memory_resource", "vmemmap_populate"};
    k.btf_tracepoints = {"mm_page_alloc"};
    k.tracepoints = {"mm_page_alloc"};
    k.fentry_works = true;
    k.traceable = std::set<std::string>{"add_memory_resource"};
    k.kprobe_symbols = {"add_memory_resource"};
    return k;
}

ProbeChoice one(const ProbeSpec& p, const KernelFeatures& k, AttachMode m = AttachMode::Auto) {
    auto v = plan_attach({p}, k, m);
    EXPECT_EQ(v.size(), 1u);
    return v.at(0);
}

TEST(AttachPlan, FentryAndFexitPreferredWhereTheyWork) {
    const auto k = debian61();
    auto plan = plan_attach({kAddEntry, kAddExit, kPageAlloc}, k, AttachMode::Auto);
    ASSERT_EQ(plan.size(), 3u);
    EXPECT_EQ(plan[0].mechanism, Mechanism::Fentry);
    EXPECT_EQ(plan[1].mechanism, Mechanism::Fexit);
    EXPECT_EQ(plan[2].mechanism, Mechanism::TpBtf);
    for (const auto& c : plan) {
        EXPECT_TRUE(c.available());
        EXPECT_TRUE(c.btf_family());
        EXPECT_TRUE(c.reason.empty());
    }
}

// 5.10's try_remove_memory(nid, start, size) and offline_pages(start_pfn,
// nr_pages) against the (start, size) and (start_pfn, nr_pages, zone, group)
// memhp's programs read: neither family is used, with the reason; a bare
// kretprobe (it reads only the return value) still is.
TEST(AttachPlan, ADifferentSignatureIsNotTraced) {
    auto k = debian61();
    k.btf_functions.insert({"try_remove_memory", "offline_pages"});
    k.kprobe_symbols.insert({"try_remove_memory", "offline_pages"});
    k.traceable->insert({"try_remove_memory", "offline_pages"});
    k.btf_sigs = {{"try_remove_memory", "SSS"}, {"offline_pages", "SS"}, {"add_memory_resource", "SPS"}};
    const ProbeSpec remove{"try_remove_memory", ProbeKind::Entry, false, "SS", true};
    const ProbeSpec offline_entry{"offline_pages", ProbeKind::Entry, false, "SSP", false};
    ProbeSpec offline_exit{"offline_pages", ProbeKind::Exit, false, "SSPP", true};
    offline_exit.classic_reads_args = false;
    const ProbeSpec add{"add_memory_resource", ProbeKind::Entry, true, "SPS", false};
    EXPECT_EQ(one(remove, k).mechanism, Mechanism::None);
    EXPECT_THAT(one(remove, k).reason, HasSubstr("BTF: 3 parameters, kinds SSS; memhp's programs read SS"));
    EXPECT_EQ(one(offline_entry, k).mechanism, Mechanism::None);
    EXPECT_EQ(one(offline_exit, k).mechanism, Mechanism::Kretprobe);
    EXPECT_EQ(one(add, k).mechanism, Mechanism::Fentry) << "the same signature";
    k.btf_sigs["offline_pages"] = "SSPP";  // 6.1
    EXPECT_EQ(one(offline_entry, k).mechanism, Mechanism::Fentry) << "a prefix is enough for an entry";
    EXPECT_EQ(one(offline_exit, k).mechanism, Mechanism::Fexit);
    k.btf_sigs.erase("try_remove_memory");
    EXPECT_EQ(one(remove, k).mechanism, Mechanism::Fentry) << "unknown signature: as before";
}

TEST(AttachPlan, KprobeFallbackWhenTrampolinesDoNotWork) {
    auto k = debian61();
    k.fentry_works = false;
    EXPECT_EQ(one(kAddEntry, k).mechanism, Mechanism::Kprobe);
    EXPECT_EQ(one(kAddExit, k).mechanism, Mechanism::Kretprobe);
    EXPECT_FALSE(one(kAddExit, k).btf_family());
    // tp_btf needs no trampoline: still preferred.
    EXPECT_EQ(one(kPageAlloc, k).mechanism, Mechanism::TpBtf);
}

TEST(AttachPlan, KprobeFallbackWhenTheFunctionIsMissingFromBtf) {
    auto k = debian61();
    k.btf_functions.erase("add_memory_resource");
    EXPECT_EQ(one(kAddEntry, k).mechanism, Mechanism::Kprobe);
    EXPECT_EQ(one(kAddExit, k).mechanism, Mechanism::Kretprobe);
}

TEST(AttachPlan, NotTraceableMeansNeitherFentryNorKprobe) {
    const auto k = debian61();
    const auto c = one(kPopulateExit, k);
    EXPECT_EQ(c.mechanism, Mechanism::None);
    EXPECT_FALSE(c.available());
    EXPECT_THAT(c.reason, HasSubstr("not traceable"));
    EXPECT_THAT(c.reason, HasSubstr("kprobe"));
}

TEST(AttachPlan, UnknownTraceabilityLeavesFentryToTheAttach) {
    auto k = debian61();
    k.traceable.reset();  // tracefs unreadable: BTF says it exists, the attach will tell
    EXPECT_EQ(one(kPopulateExit, k).mechanism, Mechanism::Fexit);
}

TEST(AttachPlan, SixTwelveTracesVmemmapPopulate) {
    auto k = debian61();
    k.traceable->insert("vmemmap_populate");
    EXPECT_EQ(one(kPopulateExit, k).mechanism, Mechanism::Fexit);
}

TEST(AttachPlan, ForcedKprobeUsesKprobesAndRawTracepoints) {
    const auto k = debian61();
    auto plan = plan_attach({kAddEntry, kAddExit, kPageAlloc}, k, AttachMode::Kprobe);
    EXPECT_EQ(plan[0].mechanism, Mechanism::Kprobe);
    EXPECT_EQ(plan[1].mechanism, Mechanism::Kretprobe);
    EXPECT_EQ(plan[2].mechanism, Mechanism::RawTp);
}

TEST(AttachPlan, ForcedKprobeWithoutTheSymbolIsUnavailableNotFentry) {
    auto k = debian61();
    k.kprobe_symbols.clear();
    const auto c = one(kAddEntry, k, AttachMode::Kprobe);
    EXPECT_EQ(c.mechanism, Mechanism::None);
    EXPECT_THAT(c.reason, HasSubstr("kprobe mode forced"));
    EXPECT_THAT(c.reason, HasSubstr("blacklist"));
}

TEST(AttachPlan, ForcedFentryNeverFallsBack) {
    auto k = debian61();
    k.fentry_works = false;
    const auto c = one(kAddEntry, k, AttachMode::Fentry);
    EXPECT_EQ(c.mechanism, Mechanism::None);
    EXPECT_THAT(c.reason, HasSubstr("fentry mode forced"));
    EXPECT_THAT(c.reason, HasSubstr("did not load"));
}

// The first fentry attach refused trampolines: auto starts over on kprobes
// and says why fentry is out.
TEST(AttachPlan, RefusedTrampolinesFallBackToKprobesWithTheReason) {
    auto k = debian61();
    k.fentry_works = false;
    k.fentry_refused = true;
    EXPECT_EQ(one(kAddEntry, k, AttachMode::Auto).mechanism, Mechanism::Kprobe);
    const auto c = one(kAddEntry, k, AttachMode::Fentry);
    EXPECT_EQ(c.mechanism, Mechanism::None);
    EXPECT_THAT(c.reason, HasSubstr("refused BPF trampolines"));
}

TEST(AttachPlan, ForcedFentryWithoutBtfTracepointIsUnavailable) {
    auto k = debian61();
    k.btf_tracepoints.clear();
    EXPECT_EQ(one(kPageAlloc, k, AttachMode::Fentry).mechanism, Mechanism::None);
    EXPECT_EQ(one(kPageAlloc, k, AttachMode::Auto).mechanism, Mechanism::RawTp);
}

TEST(AttachPlan, MissingTracepointIsUnavailableInEveryMode) {
    KernelFeatures k;
    for (auto m : {AttachMode::Auto, AttachMode::Fentry, AttachMode::Kprobe}) {
        const auto c = one(kPageAlloc, k, m);
        EXPECT_EQ(c.mechanism, Mechanism::None) << attach_mode_name(m);
        EXPECT_THAT(c.reason, HasSubstr("mm_page_alloc"));
    }
}

TEST(AttachPlan, BtfTypedefImpliesTheRawTracepoint) {
    KernelFeatures k;
    k.btf_tracepoints = {"mm_page_alloc"};  // tracefs not read
    EXPECT_EQ(one(kPageAlloc, k, AttachMode::Kprobe).mechanism, Mechanism::RawTp);
}

TEST(AttachPlan, NothingKnownGivesBothReasonsOnce) {
    KernelFeatures k;  // no BTF functions, no symbols, fentry unknown
    const auto c = one(kAddEntry, k);
    EXPECT_EQ(c.mechanism, Mechanism::None);
    EXPECT_THAT(c.reason, HasSubstr("fentry does not work"));
    EXPECT_THAT(c.reason, HasSubstr("no kprobe-able symbol"));
}

// memhp's table carries both try_remove_memory variants: 6.1's (start,
// size) and 5.10's (nid, start, size). Exactly one of them is planned on
// each kernel, the other stays out of the report; unknown BTF keeps the first.
TEST(AttachPlan, TheVariantMatchingTheKernelsSignatureIsChosen) {
    const ProbeSpec v61{"try_remove_memory", ProbeKind::Entry, false, "SS", true};
    const ProbeSpec v510{"try_remove_memory", ProbeKind::Entry, false, "SSS", true};
    auto k = debian61();
    k.btf_functions.insert("try_remove_memory");
    k.kprobe_symbols.insert("try_remove_memory");
    k.traceable->insert("try_remove_memory");
    for (const auto& [sig, want] : {std::pair{"SS", 0}, {"SSS", 1}}) {
        k.btf_sigs["try_remove_memory"] = sig;
        const auto plan = plan_attach({kAddEntry, v61, v510}, k, AttachMode::Auto);
        ASSERT_EQ(plan.size(), 3u);
        const auto& used = plan[1 + want];
        const auto& other = plan[2 - want];
        EXPECT_EQ(used.mechanism, Mechanism::Fentry) << sig;
        EXPECT_FALSE(used.superseded);
        EXPECT_FALSE(other.available()) << sig;
        EXPECT_TRUE(other.superseded) << sig;
        EXPECT_FALSE(plan[0].superseded);
    }
    k.btf_sigs["try_remove_memory"] = "SSSS";  // neither: the first reports why
    auto plan = plan_attach({v61, v510}, k, AttachMode::Auto);
    EXPECT_FALSE(plan[0].available());
    EXPECT_FALSE(plan[0].superseded);
    EXPECT_THAT(plan[0].reason, HasSubstr("its parameters differ"));
    EXPECT_TRUE(plan[1].superseded);
    k.btf_sigs.erase("try_remove_memory");  // unknown: the first, as before
    plan = plan_attach({v61, v510}, k, AttachMode::Auto);
    EXPECT_EQ(plan[0].mechanism, Mechanism::Fentry);
    EXPECT_TRUE(plan[1].superseded);
}

TEST(AttachPlan, RequiredFlagDoesNotChangeTheChoice) {
    auto k = debian61();
    k.fentry_works = false;
    k.kprobe_symbols.clear();
    // The plan never throws: whether a missing required probe is fatal is the loader's call.
    EXPECT_EQ(one(kAddEntry, k).mechanism, Mechanism::None);
}

TEST(AttachPlan, OneChoicePerSpecInOrder) {
    const auto k = debian61();
    const auto specs = hotplug_probe_specs();
    const auto plan = plan_attach(specs, k, AttachMode::Auto);
    ASSERT_EQ(plan.size(), specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
        if (specs[i].target == "add_memory_resource") {
            EXPECT_TRUE(plan[i].available());
        } else if (specs[i].kind != ProbeKind::Tracepoint && !k.btf_functions.contains(specs[i].target)) {
            EXPECT_FALSE(plan[i].available()) << specs[i].target;
        }
    }
}

TEST(AttachPlan, ModeNamesRoundTrip) {
    for (auto m : {AttachMode::Auto, AttachMode::Fentry, AttachMode::Kprobe})
        EXPECT_EQ(parse_attach_mode(attach_mode_name(m)), m);
    EXPECT_THROW((void)parse_attach_mode("uprobe"), UsageError);
    EXPECT_STREQ(mechanism_name(Mechanism::Kretprobe), "kretprobe");
    EXPECT_STREQ(mechanism_name(Mechanism::RawTp), "raw_tp");
}

// The table FunctionProbes attaches from and the programs compiled into
// hotplug.bpf.o agree: every program has exactly one probe and family.
TEST(ProbeTable, MatchesTheBpfObject) { EXPECT_THAT(probe_table_mismatches(), ::testing::IsEmpty()); }

TEST(ProbeTable, AddPathIsRequiredAndEveryProbeHasBothFamilies) {
    const auto specs = hotplug_probe_specs();
    int required = 0;
    for (const auto& s : specs) required += s.required;
    EXPECT_EQ(required, 2);  // add_memory_resource entry and exit
    EXPECT_EQ(specs.front().target, "add_memory_resource");
}

}  // namespace
}  // namespace memhp::collector
