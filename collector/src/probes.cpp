// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/probes.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/types.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/kernel_symbols.hpp"
#include "memhp/collector/tp_probes.hpp"
#include "memhp/files.hpp"

// clang-format off
#include "memhp_event.h"
#include "hotplug.h"
#include "hotplug.skel.h"
// clang-format on

namespace memhp::collector {

void HotplugProbes::SkelDeleter::operator()(hotplug* s) const { hotplug__destroy(s); }
void HotplugProbes::LinkDeleter::operator()(bpf_link* l) const { bpf_link__destroy(l); }
void HotplugProbes::RingDeleter::operator()(ring_buffer* r) const { ring_buffer__free(r); }

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

std::filesystem::path tracefs_dir() {
    for (const char* d : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"})
        if (std::filesystem::exists(std::filesystem::path(d) / "available_filter_functions")) return d;
    return {};
}

// Half of libbpf-tools' fentry_can_attach(): load a two-instruction fentry
// program against `btf_id`. Its attach half is left to memhp's own first
// fentry program (see HotplugProbes::attach): attaching and detaching a trial
// costs 0.2-0.45 s under TCG, as ftrace puts a direct call in and takes it out.
bool fentry_loads(int btf_id) {
    bpf_insn insns[2]{};
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = 0
    insns[0].dst_reg = BPF_REG_0;
    insns[1].code = BPF_JMP | BPF_EXIT;
    bpf_prog_load_opts opts{};
    opts.sz = sizeof opts;
    opts.expected_attach_type = BPF_TRACE_FENTRY;
    opts.attach_btf_id = static_cast<__u32>(btf_id);
    const int prog = bpf_prog_load(BPF_PROG_TYPE_TRACING, "memhp_probe", "GPL", insns, 2, &opts);
    if (prog < 0) return false;
    ::close(prog);
    return true;
}

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

// The kernel's BTF, or BpfError saying how to get one.
std::unique_ptr<btf, void (*)(btf*)> load_kernel_btf() {
    std::unique_ptr<btf, void (*)(btf*)> vmlinux(btf__load_vmlinux_btf(), btf__free);
    if (!vmlinux)
        throw BpfError("cannot load the kernel's BTF (/sys/kernel/btf/vmlinux): " + std::string(std::strerror(errno)) +
                       ". Boot a kernel built with CONFIG_DEBUG_INFO_BTF=y.");
    return vmlinux;
}

// The first type id of each of `names` among the BTF's types of `kind`, in
// one pass: btf__find_by_name_kind() scans every type on each call, and
// under TCG twenty such scans of the kernel's ~100k types cost 0.2 s.
std::map<std::string, int> find_btf_ids(const btf* vmlinux, const std::set<std::string>& names, unsigned kind) {
    std::map<std::string, int> ids;
    const __u32 count = btf__type_cnt(vmlinux);
    for (__u32 id = 1; id < count && ids.size() < names.size(); ++id) {
        const btf_type* t = btf__type_by_id(vmlinux, id);
        if (btf_kind(t) != kind) continue;
        const char* name = btf__name_by_offset(vmlinux, t->name_off);
        if (name && names.contains(name)) ids.emplace(name, static_cast<int>(id));
    }
    return ids;
}

// A BTF function's parameter kinds: 'S' int/enum, 'P' pointer, '?' other,
// through typedefs and qualifiers (see ProbeSpec::sig).
std::string btf_signature(const btf* vmlinux, int func_id) {
    const btf_type* func = btf__type_by_id(vmlinux, static_cast<__u32>(func_id));
    if (!func) return "";
    const btf_type* proto = btf__type_by_id(vmlinux, func->type);
    if (!proto || btf_kind(proto) != BTF_KIND_FUNC_PROTO) return "";
    std::string sig;
    const btf_param* params = btf_params(proto);
    for (__u16 i = 0; i < btf_vlen(proto); ++i) {
        if (params[i].type == 0) break;  // variadic
        const btf_type* t = btf__type_by_id(vmlinux, params[i].type);
        for (int depth = 0; t && depth < 16; ++depth) {
            const auto kind = btf_kind(t);
            if (kind != BTF_KIND_TYPEDEF && kind != BTF_KIND_CONST && kind != BTF_KIND_VOLATILE &&
                kind != BTF_KIND_RESTRICT && kind != BTF_KIND_TYPE_TAG)
                break;
            t = btf__type_by_id(vmlinux, t->type);
        }
        const auto kind = t ? btf_kind(t) : 0;
        sig += kind == BTF_KIND_INT || kind == BTF_KIND_ENUM || kind == BTF_KIND_ENUM64 ? 'S'
               : kind == BTF_KIND_PTR                                                   ? 'P'
                                                                                        : '?';
    }
    return sig;
}

// True when every function of `specs` is in the kernel's BTF.
bool all_functions_in_btf(const std::vector<ProbeSpec>& specs, const KernelFeatures& k) {
    for (const auto& s : specs)
        if (s.kind != ProbeKind::Tracepoint && !k.btf_functions.contains(s.target)) return false;
    return true;
}

// True when fentry/fexit will take every function of `specs` in `mode`, so
// neither tracefs' function list nor kprobe candidates are needed.
bool fentry_settles(const std::vector<ProbeSpec>& specs, AttachMode mode, const KernelFeatures& k) {
    return k.fentry_works && mode != AttachMode::Kprobe && all_functions_in_btf(specs, k);
}

// What the kernel offers for `specs`, all but kprobe_symbols (see
// add_kprobe_symbols). Reads only what the decision needs: tracefs' function
// list (large and slow to generate) only when fentry alone cannot settle it,
// and then beside the trial load.
KernelFeatures probe_features(const std::vector<ProbeSpec>& specs, AttachMode mode, const btf* vmlinux) {
    KernelFeatures k;
    std::set<std::string> functions, tps;
    for (const auto& s : specs) (s.kind == ProbeKind::Tracepoint ? tps : functions).insert(s.target);

    std::set<std::string> tp_types;
    for (const auto& tp : tps) tp_types.insert("btf_trace_" + tp);
    const auto func_ids = find_btf_ids(vmlinux, functions, BTF_KIND_FUNC);
    const auto tp_ids = find_btf_ids(vmlinux, tp_types, BTF_KIND_TYPEDEF);
    int trial_id = -1;
    for (const auto& s : specs) {
        if (s.kind == ProbeKind::Tracepoint) {
            if (auto id = tp_ids.find("btf_trace_" + s.target); id != tp_ids.end()) {
                k.btf_tracepoints.insert(s.target);
                k.btf_ids[id->first] = id->second;
            }
            continue;
        }
        const auto id = func_ids.find(s.target);
        if (id == func_ids.end()) continue;
        k.btf_functions.insert(s.target);
        k.btf_ids[s.target] = id->second;
        k.btf_sigs[s.target] = btf_signature(vmlinux, id->second);
        if (trial_id < 0) trial_id = id->second;  // the table starts with the required add_memory_resource
    }
    const bool in_btf = all_functions_in_btf(specs, k);
    const auto tracing = tracefs_dir();
    const auto function_list = tracing / "available_filter_functions";
    std::future<std::optional<std::string>> list;
    if (!tracing.empty() && (mode == AttachMode::Kprobe || !in_btf))
        list = std::async(std::launch::async, [&function_list] { return try_read_file(function_list); });
    if (mode != AttachMode::Kprobe && trial_id >= 0) k.fentry_works = fentry_loads(trial_id);
    // A struct passed by value (init_memory_mapping's pgprot_t): trampolines
    // take those only on newer kernels ("bpf: Allow struct argument in
    // trampoline based programs", 6.1), and one program the verifier refuses
    // fails the whole object's load. A trial load per such function decides.
    if (k.fentry_works)
        for (const auto& [fn, sig] : k.btf_sigs)
            if (sig.find('?') != std::string::npos && !fentry_loads(k.btf_ids.at(fn))) k.fentry_unloadable.insert(fn);

    if (!fentry_settles(specs, mode, k) && !tracing.empty()) {
        const auto text = list.valid() ? list.get() : try_read_file(function_list);
        if (text) k.traceable = parse_function_list(*text, functions);
    }

    for (const auto& tp : tps) {
        if (k.btf_tracepoints.contains(tp)) {
            k.tracepoints.insert(tp);
            continue;
        }
        if (tracing.empty()) continue;
        std::error_code ec;
        for (const auto& sys : std::filesystem::directory_iterator(tracing / "events", ec))
            if (std::filesystem::exists(sys.path() / tp, ec)) k.tracepoints.insert(tp);
    }
    return k;
}

// The functions of `specs` a kprobe can take, minus the kprobe blacklist:
// the traceable ones when tracefs' list was read, else kernel text symbols
// from /proc/kallsyms (`syms`, read only then). Neither: nothing to do.
void add_kprobe_symbols(KernelFeatures& k, const std::vector<ProbeSpec>& specs, const KallsymsInfo* syms) {
    if (!k.traceable && !syms) return;
    std::set<std::string> functions;
    for (const auto& s : specs)
        if (s.kind != ProbeKind::Tracepoint) functions.insert(s.target);
    for (const auto& f : functions)
        if (k.traceable ? k.traceable->contains(f) : syms && syms->text.contains(f)) k.kprobe_symbols.insert(f);
    if (const auto list = try_read_file("/sys/kernel/debug/kprobes/blacklist"))
        for (const auto& f : parse_kprobe_blacklist(*list, functions)) k.kprobe_symbols.erase(f);
}

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

ProbeOptions probe_options_from_environment() {
    ProbeOptions o;
    if (const char* p = std::getenv("MEMHP_PROBES"); p && std::string(p) == "fentry") o.use_tracepoints = false;
    o.refuse_fentry = std::getenv("MEMHP_TEST_REFUSE_FENTRY") != nullptr;
    if (const char* n = std::getenv("MEMHP_TEST_MISS_ONLINE_EXITS")) {
        const std::string_view v(n);
        std::uint32_t count = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), count);
        if (ec != std::errc{} || end != v.data() + v.size() || count > 1000)
            throw Error("MEMHP_TEST_MISS_ONLINE_EXITS='" + std::string(v) + "': want a count from 0 to 1000");
        o.test_miss_online_exits = count;
    }
    return o;
}

HotplugProbes::HotplugProbes(Handler handler, ProbeOptions options)
    : handler_(std::move(handler)), stale_op_age_ns_(options.stale_op_age_ns) {
    auto t = std::chrono::steady_clock::now();
    auto phase_done = [&](const char* name) {
        const auto now = std::chrono::steady_clock::now();
        phases_.emplace_back(name, std::chrono::duration<double, std::milli>(now - t).count());
        t = now;
    };
    check_bpf_prerequisites();

    // ---- memory_hotplug tracepoint path (kernel-patches/, tp_probes.cpp) ----
    // A kernel with memhp's trace events gets hotplug_tp.bpf.c instead of
    // this file's object: every phase is observed directly, nothing inferred.
    // options.use_tracepoints=false, or a forced attach mode, keeps the function probes.
    const auto kernel_btf = load_kernel_btf();  // parsed once, for both paths' decisions
    phase_done("btf");
    if (options.use_tracepoints && options.mode == AttachMode::Auto) {
        if (has_hotplug_tracepoints(kernel_btf.get())) {
            tp_ = std::make_unique<TracepointProbes>(report_);
            populate_direct_ = true;
            ring_.reset(ring_buffer__new(tp_->events_fd(), &HotplugProbes::on_record, this, nullptr));
            if (!ring_) throw BpfError(std::string("cannot set up the ring buffer: ") + std::strerror(errno));
            return;
        }
    }
    // ---- end of the tracepoint path ----

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
    features_ = probe_features(specs, options.mode, kernel_btf.get());
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
    for (const auto& st : report_)
        if (st.required && !st.attached)
            throw BpfError("cannot attach to " + st.target + " (" + st.kind + "): " + st.reason +
                           ". memhp needs fentry/fexit (CONFIG_FUNCTION_TRACER, CONFIG_DEBUG_INFO_BTF) or "
                           "kprobes (CONFIG_KPROBES) on the memory hot-plug path (CONFIG_MEMORY_HOTPLUG).");
    skel_->bss->populate_direct = populate_direct_ ? 1 : 0;
    phase_done("attach");

    ring_.reset(ring_buffer__new(bpf_map__fd(skel_->maps.events), &HotplugProbes::on_record, this, nullptr));
    if (!ring_) throw BpfError(std::string("cannot set up the ring buffer: ") + std::strerror(errno));
}

void HotplugProbes::load(const std::vector<ProbeChoice>& plan) {
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

void HotplugProbes::set_kernel_addresses(const KallsymsInfo& syms) {
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

bool HotplugProbes::attach(const std::vector<ProbeChoice>& plan, bool fail_fentry) {
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

HotplugProbes::~HotplugProbes() {
    ring_.reset();
    links_.clear();
    skel_.reset();
}

int HotplugProbes::on_record(void* ctx, void* data, std::size_t size) {
    auto* self = static_cast<HotplugProbes*>(ctx);
    self->handler_(std::span<const std::uint8_t>(static_cast<const std::uint8_t*>(data), size));
    return 0;
}

int HotplugProbes::poll(int timeout_ms) {
    const int n = ring_buffer__poll(ring_.get(), timeout_ms);
    const std::uint64_t now = monotonic_ns();
    if (now - last_sweep_ns_ >= 5000000000ull) {
        last_sweep_ns_ = now;
        const SweepCounts c =
            tp_ ? sweep_ops_map(tp_->ops_fd(), tp_->outer_ops_fd(), tp_->inflight(), stale_op_age_ns_, task_exists)
                : sweep_ops_map(bpf_map__fd(skel_->maps.ops), bpf_map__fd(skel_->maps.outer_ops), &skel_->bss->inflight,
                                stale_op_age_ns_, task_exists);
        swept_task_gone_ += c.task_gone;
        swept_too_old_ += c.too_old;
    }
    return n;
}

OpHealth HotplugProbes::op_health() const {
    OpHealth h;
    if (tp_) {
        h = tp_->bpf_op_health();
    } else {
        h.stale_missed_exit = __atomic_load_n(&skel_->bss->stale_ops, __ATOMIC_RELAXED);
        h.ops_map_full = __atomic_load_n(&skel_->bss->ops_map_full, __ATOMIC_RELAXED);
        h.nest_overflow = __atomic_load_n(&skel_->bss->nest_overflow, __ATOMIC_RELAXED);
    }
    h.swept_task_gone = swept_task_gone_.load(std::memory_order_relaxed);
    h.swept_too_old = swept_too_old_.load(std::memory_order_relaxed);
    return h;
}

std::uint64_t HotplugProbes::dropped_events() const {
    if (tp_) return tp_->dropped_events();  // tracepoint path
    return __atomic_load_n(&skel_->bss->dropped_events, __ATOMIC_RELAXED);
}

std::uint64_t HotplugProbes::interrupt_page_events() const {
    if (tp_) return tp_->interrupt_page_events();
    return __atomic_load_n(&skel_->bss->interrupt_page_events, __ATOMIC_RELAXED);
}

std::string HotplugProbes::path() const {
    if (tp_) return "memory_hotplug tracepoints";
    bool btf = false, classic = false;
    for (const auto& st : report_) {
        if (!st.attached) continue;
        (st.mode == "kprobe" || st.mode == "kretprobe" || st.mode == "raw_tp" ? classic : btf) = true;
    }
    return btf && classic ? "fentry/fexit and kprobe/kretprobe" : classic ? "kprobe/kretprobe" : "fentry/fexit";
}

std::string HotplugProbes::populate_timing() const {
    if (tp_) return "timed at the mhp_vmemmap_populate_begin/end events";
    return populate_direct_ ? "timed at vmemmap_populate" : "inferred from __add_pages";
}

std::vector<std::pair<std::string, int>> HotplugProbes::program_fds() const {
    std::vector<std::pair<std::string, int>> out;
    if (!skel_) return out;  // tracepoint path
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel_->obj) {
        const std::string name = bpf_program__name(prog);
        if (attached_programs_.contains(name)) out.emplace_back(name, bpf_program__fd(prog));
    }
    return out;
}

std::string HotplugProbes::describe() const {
    std::string out = "  path: " + path() + "\n";  // which path is active
    if (features_.fentry_refused)
        out += "  note: the kernel refused BPF trampolines at the first fentry attach, so kprobes stand in\n";
    for (const auto& st : report_) {
        out += "  " + (st.attached ? st.mode : st.kind) + " " + st.target + ": " +
               (st.attached ? "attached" : "unavailable: " + st.reason) + "\n";
    }
    return out;
}

}  // namespace memhp::collector
