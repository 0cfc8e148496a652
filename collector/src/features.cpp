// SPDX-License-Identifier: Apache-2.0
// Feature probing: what the running kernel offers memhp's probes (BTF,
// tracefs, trial fentry loads, kprobe candidates, memhp's trace events).
#include "memhp/collector/features.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <set>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/kernel_symbols.hpp"
#include "memhp/files.hpp"

namespace memhp::collector {

namespace {
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

}  // namespace

std::filesystem::path tracefs_dir() {
    for (const char* d : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"})
        if (std::filesystem::exists(std::filesystem::path(d) / "available_filter_functions")) return d;
    return {};
}

// Half of libbpf-tools' fentry_can_attach(): load a two-instruction fentry
// program against `btf_id`. Its attach half is left to memhp's own first
// fentry program (see FunctionProbes::attach): attaching and detaching a trial
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

// The kernel's BTF, or BpfError saying how to get one.
KernelBtf load_kernel_btf() {
    KernelBtf vmlinux(btf__load_vmlinux_btf(), btf__free);
    if (!vmlinux)
        throw BpfError("cannot load the kernel's BTF (/sys/kernel/btf/vmlinux): " + std::string(std::strerror(errno)) +
                       ". Boot a kernel built with CONFIG_DEBUG_INFO_BTF=y.");
    return vmlinux;
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

std::string btf_trace_type(const std::string& event) { return "btf_trace_" + event; }

bool has_hotplug_tracepoints(const btf* vmlinux_btf) {
    return vmlinux_btf &&
           btf__find_by_name_kind(vmlinux_btf, btf_trace_type("mhp_add_memory_begin").c_str(), BTF_KIND_TYPEDEF) >= 0;
}

}  // namespace memhp::collector
