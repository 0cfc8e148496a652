// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/probes.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/types.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <optional>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/features.hpp"
#include "memhp/collector/kernel_symbols.hpp"
#include "memhp/files.hpp"

// clang-format off
#include "memhp_event.h"
#include "hotplug.h"
#include "hotplug.skel.h"
// clang-format on

namespace memhp::collector {

void FunctionProbes::SkelDeleter::operator()(hotplug* s) const { hotplug__destroy(s); }
void FunctionProbes::LinkDeleter::operator()(bpf_link* l) const { bpf_link__destroy(l); }

namespace {

// Each probe and its programs in hotplug.bpf.c: the BTF family (fentry/fexit,
// tp_btf) and the classic one (kprobe/kretprobe, raw_tp). A kretprobe that
// needs the function's arguments comes with a kprobe saving them; that pair
// attaches or fails together.
struct ProbeDef {
    ProbeSpec spec;
    std::vector<const char*> btf;
    std::vector<const char*> classic;
};

constexpr auto kEntry = ProbeKind::Entry;
constexpr auto kExit = ProbeKind::Exit;
constexpr auto kTp = ProbeKind::Tracepoint;

const std::vector<ProbeDef>& probe_table() {
    static const std::vector<ProbeDef> table = {
        {{"add_memory_resource", kEntry, true, "SPS", false}, {"add_fentry"}, {"add_kprobe"}},
        {{"add_memory_resource", kExit, true, "SPS", true}, {"add_fexit"}, {"add_kretprobe"}},
        {{"add_memory_driver_managed", kEntry}, {"add_driver_managed_fentry"}, {"add_driver_managed_kprobe"}},
        {{"add_memory_driver_managed", kExit}, {"add_driver_managed_fexit"}, {"add_driver_managed_kretprobe"}},
        {{"arch_add_memory", kExit, false, "SSSP", true},
         {"arch_add_fexit"},
         {"arch_add_kprobe_args", "arch_add_kretprobe"}},
        {{"__add_pages", kEntry}, {"add_pages_fentry"}, {"add_pages_kprobe"}},
        {{"__add_pages", kExit, false, "SSSP", true},
         {"add_pages_fexit"},
         {"add_pages_kprobe_args", "add_pages_kretprobe"}},
        {{"vmemmap_populate", kEntry}, {"populate_fentry"}, {"populate_kprobe"}},
        {{"vmemmap_populate", kExit, false, "SSSP", true},
         {"populate_fexit"},
         {"populate_kprobe_args", "populate_kretprobe"}},
        {{"mm_page_alloc", kTp}, {"page_alloc_tp_btf"}, {"page_alloc_raw_tp"}},
        {{"mm_page_free", kTp}, {"page_free_tp_btf"}, {"page_free_raw_tp"}},
        {{"memory_subsys_online", kEntry, false, "P", false}, {"online_fentry"}, {"online_kprobe"}},
        {{"memory_subsys_online", kExit, false, "P", true}, {"online_fexit"}, {"online_kretprobe"}},
        {{"mhp_init_memmap_on_memory", kEntry, false, "SS", false}, {"init_memmap_fentry"}, {"init_memmap_kprobe"}},
        {{"online_pages", kEntry, false, "SSP", false}, {"online_pages_fentry"}, {"online_pages_kprobe"}},
        {{"online_pages", kEntry, false, "SSSS", true}, {"online_pages_nid_fentry"}, {"online_pages_nid_kprobe"}},
        {{"memory_subsys_offline", kEntry, false, "P", false}, {"offline_fentry"}, {"offline_kprobe"}},
        {{"memory_subsys_offline", kExit, false, "P", true}, {"offline_fexit"}, {"offline_kretprobe"}},
        {{"offline_pages", kEntry, false, "SSP", false}, {"offline_pages_fentry"}, {"offline_pages_kprobe"}},
        {{"offline_pages", kExit, false, "SSPP", true}, {"offline_pages_fexit"}, {"offline_pages_kretprobe"}},
        {{"offline_pages", kEntry, false, "SS", true}, {"offline_pages_pfns_fentry"}, {"offline_pages_pfns_kprobe"}},
        {{"offline_pages", kExit, false, "SS", true}, {"offline_pages_pfns_fexit"}, {"offline_pages_pfns_kretprobe"}},
        {{"mhp_deinit_memmap_on_memory", kEntry, false, "SS", false},
         {"deinit_memmap_fentry"},
         {"deinit_memmap_kprobe"}},
        {{"try_remove_memory", kEntry, false, "SS", true}, {"remove_fentry"}, {"remove_kprobe"}},
        {{"try_remove_memory", kExit, false, "SS", true}, {"remove_fexit"}, {"remove_kretprobe"}},
        {{"try_remove_memory", kEntry, false, "SSS", true}, {"remove_nid_fentry"}, {"remove_nid_kprobe"}},
        {{"try_remove_memory", kExit, false, "SSS", true}, {"remove_nid_fexit"}, {"remove_nid_kretprobe"}},
        {{"arch_remove_memory", kEntry, false, "SSP", false}, {"arch_remove_fentry"}, {"arch_remove_kprobe"}},
        {{"arch_remove_memory", kEntry, false, "SSSP", false}, {"arch_remove_nid_fentry"}, {"arch_remove_nid_kprobe"}},
    // Sub-phases (event v6): entry and exit of one function attach together or not at all.
#define SUB(fn, sig)                                                                    \
    {                                                                                   \
        {#fn, kExit, false, sig, false}, {"sub_" #fn "_fentry", "sub_" #fn "_fexit"}, { \
            "sub_" #fn "_kprobe", "sub_" #fn "_kretprobe"                               \
        }                                                                               \
    }
        SUB(arch_add_memory, ""),
        SUB(vmemmap_populate, ""),
        SUB(init_memory_mapping, ""),
        SUB(create_memory_block_devices, ""),
        SUB(online_pages, ""),
        SUB(move_pfn_range_to_zone, "P"),
        SUB(memmap_init_range, ""),
        SUB(set_zone_contiguous, ""),
        SUB(build_all_zonelists, ""),
        SUB(init_per_zone_wmark_min, ""),
        SUB(memory_notify, ""),
        SUB(undo_isolate_page_range, ""),
        SUB(kswapd_run, ""),
        SUB(kcompactd_run, ""),
        SUB(mhp_init_memmap_on_memory, ""),
#undef SUB
    };
    return table;
}

const char* kind_name(ProbeKind k) {
    switch (k) {
        case ProbeKind::Entry: return "entry";
        case ProbeKind::Exit: return "exit";
        case ProbeKind::Tracepoint: return "tracepoint";
    }
    return "unknown";
}

// Symbols read from /proc/kallsyms besides the probe targets.
constexpr const char* kVmemmapBase = "vmemmap_base";
constexpr const char* kNrMemmapPages = "nr_memmap_pages";  // mm/vmstat.c, 6.11+
constexpr const char* kSiteBlock = "vmemmap_alloc_block";
constexpr const char* kSiteDirectMap = "init_memory_mapping";
// vmemmap_alloc_block()'s callers that allocate page tables (order as in the BPF array).
constexpr std::array<const char*, 5> kSitePageTableCallers = {"vmemmap_alloc_block_zero", "vmemmap_pgd_populate",
                                                              "vmemmap_p4d_populate", "vmemmap_pud_populate",
                                                              "vmemmap_pmd_populate"};

// libbpf resolves each fentry/fexit/tp_btf target by a linear scan of the
// kernel's BTF, about 20 ms a program under TCG (0.4 s for memhp's 21).
// probe_features() found every id in one pass already: SEC handlers of
// memhp's own hand libbpf those ids (a target not among them, e.g. in another
// object, gets libbpf's own lookup). They are registered once per process
// and never unregistered: libbpf 1.1 corrupts its heap when handlers are
// registered again after all were unregistered (seen as a crash in
// libbpf_register_prog_handler), and each program keeps a pointer to its
// handler.
std::mutex g_btf_ids_mutex;
std::map<std::string, int> g_btf_ids;  // BTF type ids known to this process

int prepare_btf_target(bpf_program* prog, bpf_prog_load_opts* opts, long) {
    const std::string sec = bpf_program__section_name(prog);
    const std::string target = sec.substr(sec.find('/') + 1);
    const auto type = bpf_program__expected_attach_type(prog);
    const std::string key = type == BPF_TRACE_RAW_TP ? "btf_trace_" + target : target;
    int id = -1;
    {
        std::lock_guard lock(g_btf_ids_mutex);
        if (const auto it = g_btf_ids.find(key); it != g_btf_ids.end()) id = it->second;
    }
    if (id < 0) id = libbpf_find_vmlinux_btf_id(target.c_str(), type);
    if (id < 0) return id;
    opts->attach_btf_obj_fd = 0;
    opts->attach_btf_id = static_cast<__u32>(id);
    return 0;
}

// Makes `ids` known to the handlers, registering them on first use.
void use_btf_ids(const std::map<std::string, int>& ids) {
    static const bool registered = [] {
        libbpf_prog_handler_opts opts{};
        opts.sz = sizeof opts;
        opts.prog_prepare_load_fn = prepare_btf_target;
        opts.prog_attach_fn = [](const bpf_program* prog, long, bpf_link** link) {
            *link = bpf_program__attach_trace(prog);
            return *link ? 0 : -errno;
        };
        for (const auto& [sec, type] : {std::pair{"fentry+", BPF_TRACE_FENTRY}, std::pair{"fexit+", BPF_TRACE_FEXIT},
                                        std::pair{"tp_btf+", BPF_TRACE_RAW_TP}}) {
            const int id = libbpf_register_prog_handler(sec, BPF_PROG_TYPE_TRACING, type, &opts);
            if (id < 0) throw BpfError(std::string("cannot register a libbpf SEC handler: ") + std::strerror(-id));
        }
        return true;
    }();
    (void)registered;
    std::lock_guard lock(g_btf_ids_mutex);
    g_btf_ids.insert(ids.begin(), ids.end());
}

// Errors with which the kernel refuses BPF trampolines altogether (no
// fentry on this architecture or configuration), as opposed to one function.
bool trampolines_refused(int err) { return err == 524 /* ENOTSUPP */ || err == EOPNOTSUPP; }

const char* attach_hint(int err) {
    if (err == EINVAL || err == ENOENT || err == ESRCH || err == EBUSY || err == ENOTSUP || err == EOPNOTSUPP)
        return " (the function is not traceable on this kernel, e.g. __meminit/notrace)";
    return "";
}

}  // namespace

std::vector<ProbeSpec> hotplug_probe_specs() {
    std::vector<ProbeSpec> out;
    for (const auto& d : probe_table()) {
        out.push_back(d.spec);
        out.back().classic_reads_args = d.spec.kind == ProbeKind::Entry || d.classic.size() > 1;
    }
    return out;
}

std::vector<std::string> probe_table_mismatches() {
    std::vector<std::string> problems;
    std::unique_ptr<hotplug, void (*)(hotplug*)> skel(hotplug__open(), hotplug__destroy);
    if (!skel) return {std::string("cannot open the BPF object: ") + std::strerror(errno)};
    std::map<std::string, int> claimed;
    for (const auto& d : probe_table()) {
        for (const char* p : d.btf) ++claimed[p];
        for (const char* p : d.classic) ++claimed[p];
    }
    std::set<std::string> present;
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel->obj) {
        const std::string name = bpf_program__name(prog);
        present.insert(name);
        auto it = claimed.find(name);
        if (it == claimed.end())
            problems.push_back("program " + name + " belongs to no probe");
        else if (it->second != 1)
            problems.push_back("program " + name + " belongs to " + std::to_string(it->second) + " probes");
    }
    for (const auto& [name, n] : claimed)
        if (!present.contains(name)) problems.push_back("probe table names " + name + ", which the object lacks");
    for (const auto& d : probe_table()) {
        // Each family's programs must target the probe's function.
        for (const auto* family : {&d.btf, &d.classic})
            for (const char* p : *family) {
                bpf_program* bp = bpf_object__find_program_by_name(skel->obj, p);
                if (!bp) continue;
                const std::string sec = bpf_program__section_name(bp);
                if (sec.substr(sec.find('/') + 1) != d.spec.target)
                    problems.push_back("program " + std::string(p) + " (" + sec + ") is not on " + d.spec.target);
            }
    }
    return problems;
}

FunctionProbes::FunctionProbes(RecordHandler handler, const ProbeOptions& options, const btf* kernel_btf,
                               std::vector<std::pair<std::string, double>> phases)
    : RingProbeBackend(std::move(handler), options.stale_op_age_ns, std::move(phases)) {
    load_and_attach(options, kernel_btf);
    open_ring(bpf_map__fd(skel_->maps.events));
}

void FunctionProbes::load_and_attach(const ProbeOptions& options, const btf* kernel_btf) {
    auto t = std::chrono::steady_clock::now();
    auto phase_done = [&](const char* name) {
        const auto now = std::chrono::steady_clock::now();
        phases_.emplace_back(name, std::chrono::duration<double, std::milli>(now - t).count());
        t = now;
    };
    // One pass over /proc/kallsyms: vmemmap_base (KASLR), the vmemmap
    // allocators' ranges (call-site classification) and, without tracefs,
    // kprobe candidates. The kernel takes a while to list every symbol
    // (0.35 s under TCG), so it runs beside the feature probing and the
    // load; the programs read what it finds from .bss, set before attach.
    const auto specs = hotplug_probe_specs();
    std::set<std::string> wanted = {kVmemmapBase, kSiteBlock, kSiteDirectMap, kNrMemmapPages};
    wanted.insert(kSitePageTableCallers.begin(), kSitePageTableCallers.end());
    for (const auto& s : specs) wanted.insert(s.target);
    auto kallsyms = std::async(std::launch::async, [&wanted] {
        const auto text = try_read_file("/proc/kallsyms");
        if (!text) throw BpfError("cannot read /proc/kallsyms: " + std::string(std::strerror(errno)));
        return parse_kallsyms(*text, wanted);
    });
    std::optional<KallsymsInfo> syms;
    features_ = probe_features(specs, options.mode, kernel_btf);
    // Kprobe candidates come from tracefs' list when it was read. Without
    // it they are kallsyms' text symbols, which matter only when fentry
    // does not cover every function.
    const auto add_kprobe_candidates = [&] {
        if (!features_.traceable && !syms && !fentry_settles(specs, options.mode, features_)) syms = kallsyms.get();
        add_kprobe_symbols(features_, specs, syms ? &*syms : nullptr);
    };
    add_kprobe_candidates();
    phase_done("features");
    for (;;) {
        const auto plan = plan_attach(specs, features_, options.mode);
        load(plan);
        phase_done("load");
        if (!syms) syms = kallsyms.get();
        set_kernel_addresses(*syms);
        skel_->bss->test_miss_online_exits = options.test_miss_online_exits;
        phase_done("kallsyms");
        if (attach(plan, options.refuse_fentry)) break;
        // The first fentry attach found that this kernel has no BPF
        // trampolines after all: start over on kprobes.
        features_.fentry_works = false;
        features_.fentry_refused = true;
        add_kprobe_candidates();
    }
    check_required();
    skel_->bss->populate_direct = populate_direct_ ? 1 : 0;
    phase_done("attach");
}

void FunctionProbes::check_required() const {
    for (const auto& st : report_)
        if (st.required && !st.attached)
            throw BpfError("cannot attach to " + st.target + " (" + st.kind + "): " + st.reason +
                           ". memhp needs fentry/fexit (CONFIG_FUNCTION_TRACER, CONFIG_DEBUG_INFO_BTF) or "
                           "kprobes (CONFIG_KPROBES) on the memory hot-plug path (CONFIG_MEMORY_HOTPLUG).");
}

void FunctionProbes::load(const std::vector<ProbeChoice>& plan) {
    use_btf_ids(features_.btf_ids);
    skel_.reset(hotplug__open());
    if (!skel_) throw BpfError(std::string("cannot open the BPF object: ") + std::strerror(errno));
    // Autoload exactly the chosen family's programs.
    std::set<std::string> wanted_progs;
    const auto& table = probe_table();
    for (std::size_t i = 0; i < table.size(); ++i) {
        if (!plan[i].available()) continue;
        for (const char* p : plan[i].btf_family() ? table[i].btf : table[i].classic) wanted_progs.insert(p);
    }
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel_->obj) {
        bpf_program__set_autoload(prog, wanted_progs.contains(bpf_program__name(prog)));
    }
    clear_libbpf_log();
    if (int err = hotplug__load(skel_.get()))
        throw BpfError("cannot load memhp's BPF programs: " + std::string(std::strerror(-err)) +
                       (err == -EPERM ? " (run as root, or with CAP_BPF and CAP_PERFMON)" : "") + "\nlibbpf said:\n" +
                       libbpf_log_tail(12));
}

void FunctionProbes::set_kernel_addresses(const KallsymsInfo& syms) {
    if (!syms.address.contains(kVmemmapBase) || syms.address.at(kVmemmapBase) == 0)
        throw BpfError(
            "cannot find vmemmap_base in /proc/kallsyms (addresses read as 0 without root or "
            "CAP_SYSLOG; memhp supports x86-64 kernels with SPARSEMEM_VMEMMAP)");
    skel_->bss->vmemmap_base_addr = syms.address.at(kVmemmapBase);
    // The kernel's own memmap count, where it has one (data, not text).
    if (syms.address.contains(kNrMemmapPages) && !syms.text.contains(kNrMemmapPages))
        skel_->bss->nr_memmap_pages_addr = syms.address.at(kNrMemmapPages);
    // Call-site ranges for classifying page-allocator pages; a symbol this
    // kernel lacks (inlined) stays 0 and is skipped by the BPF side.
    auto range_of = [&](const char* name, auto& r) {
        if (syms.text.contains(name) && syms.end.contains(name)) {
            r.start = syms.address.at(name);
            r.end = syms.end.at(name);
        }
    };
    range_of(kSiteBlock, skel_->bss->site_block);
    range_of(kSiteDirectMap, skel_->bss->site_directmap);
    static_assert(kSitePageTableCallers.size() ==
                  sizeof(skel_->bss->site_pt_callers) / sizeof(skel_->bss->site_pt_callers[0]));
    for (std::size_t i = 0; i < kSitePageTableCallers.size(); ++i)
        range_of(kSitePageTableCallers[i], skel_->bss->site_pt_callers[i]);
}

bool FunctionProbes::attach(const std::vector<ProbeChoice>& plan, bool fail_fentry) {
    report_.clear();
    links_.clear();
    attached_programs_.clear();
    populate_direct_ = false;
    const auto& table = probe_table();
    bool first_trampoline = true;
    for (std::size_t i = 0; i < table.size(); ++i) {
        const auto& def = table[i];
        if (plan[i].superseded) continue;  // another variant of the same function stands for it
        AttachStatus st;
        st.target = def.spec.target;
        st.kind = kind_name(def.spec.kind);
        st.required = def.spec.required;
        st.mode = mechanism_name(plan[i].mechanism);
        if (!plan[i].available()) {
            st.program = def.btf.front();
            st.reason = plan[i].reason;
            report_.push_back(st);
            continue;
        }
        const bool trampoline = plan[i].mechanism == Mechanism::Fentry || plan[i].mechanism == Mechanism::Fexit;
        const auto& progs = plan[i].btf_family() ? def.btf : def.classic;
        st.program = progs.back();  // the one doing the work (after any argument saver)
        std::vector<std::unique_ptr<bpf_link, LinkDeleter>> links;
        for (const char* name : progs) {
            bpf_program* p = bpf_object__find_program_by_name(skel_->obj, name);
            bpf_link* link = !p || (trampoline && fail_fentry) ? nullptr : bpf_program__attach(p);
            if (!link) {
                const int err = !p ? ENOENT : trampoline && fail_fentry ? 524 : errno;
                // The first trampoline tells whether fentry works at all.
                if (trampoline && first_trampoline && trampolines_refused(err)) return false;
                st.reason = std::string(name) + ": " + std::strerror(err) + attach_hint(err);
                links.clear();
                break;
            }
            links.emplace_back(link);
        }
        if (trampoline) first_trampoline = false;
        st.attached = !links.empty();
        if (st.attached) attached_programs_.insert(progs.begin(), progs.end());
        for (auto& l : links) links_.push_back(std::move(l));
        if (st.attached && st.target == "vmemmap_populate" && def.spec.kind == ProbeKind::Exit) populate_direct_ = true;
        report_.push_back(st);
    }
    return true;
}

FunctionProbes::~FunctionProbes() {
    close_ring();
    links_.clear();
    skel_.reset();
}

RingProbeBackend::OpsState FunctionProbes::ops_state() const {
    return {bpf_map__fd(skel_->maps.ops), bpf_map__fd(skel_->maps.outer_ops), &skel_->bss->inflight};
}

OpHealth FunctionProbes::bpf_op_health() const {
    OpHealth h;
    h.stale_missed_exit = __atomic_load_n(&skel_->bss->stale_ops, __ATOMIC_RELAXED);
    h.ops_map_full = __atomic_load_n(&skel_->bss->ops_map_full, __ATOMIC_RELAXED);
    h.nest_overflow = __atomic_load_n(&skel_->bss->nest_overflow, __ATOMIC_RELAXED);
    return h;
}

std::uint64_t FunctionProbes::dropped_events() const {
    return __atomic_load_n(&skel_->bss->dropped_events, __ATOMIC_RELAXED);
}

std::uint64_t FunctionProbes::interrupt_page_events() const {
    return __atomic_load_n(&skel_->bss->interrupt_page_events, __ATOMIC_RELAXED);
}

std::string FunctionProbes::path() const {
    bool btf = false, classic = false;
    for (const auto& st : report_) {
        if (!st.attached) continue;
        (st.mode == "kprobe" || st.mode == "kretprobe" || st.mode == "raw_tp" ? classic : btf) = true;
    }
    return btf && classic ? "fentry/fexit and kprobe/kretprobe" : classic ? "kprobe/kretprobe" : "fentry/fexit";
}

std::string FunctionProbes::populate_timing() const {
    return populate_direct_ ? "timed at vmemmap_populate" : "inferred from __add_pages";
}

std::vector<std::pair<std::string, int>> FunctionProbes::program_fds() const {
    std::vector<std::pair<std::string, int>> out;
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel_->obj) {
        const std::string name = bpf_program__name(prog);
        if (attached_programs_.contains(name)) out.emplace_back(name, bpf_program__fd(prog));
    }
    return out;
}

}  // namespace memhp::collector
