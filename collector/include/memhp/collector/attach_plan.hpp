// SPDX-License-Identifier: Apache-2.0
#pragma once
// Which attach mechanism each hot-plug probe uses on this kernel: a pure
// decision from what user space found out about the kernel (BTF, a trial
// fentry attach, ftrace-able and kprobe-able symbols, tracepoints) and the
// mode the user forced, so it is unit-tested without a kernel.
//
// Two families, as in bcc's libbpf-tools: BTF-based trampolines (fentry/fexit,
// tp_btf) are preferred; the classic ones (kprobe/kretprobe, raw_tp) are the
// fallback where a function is missing from BTF or trampolines do not work.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace memhp::collector {

// --attach-mode: auto picks per probe; fentry / kprobe force one family
// (fentry: fentry/fexit + tp_btf; kprobe: kprobe/kretprobe + raw_tp).
enum class AttachMode { Auto, Fentry, Kprobe };
[[nodiscard]] const char* attach_mode_name(AttachMode m);  // "auto", "fentry", "kprobe"
// Throws UsageError for anything but "auto", "fentry", "kprobe".
[[nodiscard]] AttachMode parse_attach_mode(std::string_view s);

enum class ProbeKind { Entry, Exit, Tracepoint };

struct ProbeSpec {
    std::string target;  // kernel function, or tracepoint name (e.g. "mm_page_alloc")
    ProbeKind kind = ProbeKind::Entry;
    bool required = false;  // memhp has nothing to say without it
    // The parameters memhp's programs read, by BTF kind: 'S' scalar (int,
    // enum, through typedefs), 'P' pointer; empty: none read. A kernel whose
    // function differs (5.10's try_remove_memory(nid, start, size) against
    // 6.1's (start, size)) gets neither program: they would load and read
    // the wrong arguments. `exact`: the whole parameter list (fexit finds the
    // return value after the last parameter); else a prefix.
    std::string sig;
    bool exact = false;
    bool classic_reads_args = true;  // the kprobe twin reads the same arguments (not a bare kretprobe)
};

// What the loader learned about the running kernel.
struct KernelFeatures {
    std::set<std::string> btf_functions;    // BTF_KIND_FUNC names in vmlinux BTF
    std::set<std::string> btf_tracepoints;  // tracepoints with a btf_trace_<name> typedef (tp_btf)
    // Their BTF type ids: function name -> FUNC, "btf_trace_<name>" -> TYPEDEF.
    std::map<std::string, int> btf_ids;
    // Each BTF function's parameter kinds ("SSP"), see ProbeSpec::sig.
    std::map<std::string, std::string> btf_sigs;
    std::set<std::string> tracepoints;  // tracepoints raw_tp can attach to
    // A trial fentry program loaded; memhp's first fentry attach confirms it
    // (fentry_refused when that attach found no BPF trampolines here).
    bool fentry_works = false;
    // Functions whose trial fentry program the verifier refused (a struct
    // argument passed by value on an older kernel).
    std::set<std::string> fentry_unloadable;
    bool fentry_refused = false;
    // Functions ftrace can patch (available_filter_functions); nullopt when
    // tracefs could not be read. Trampolines need an ftrace site.
    std::optional<std::set<std::string>> traceable;
    // Functions a kprobe can be put on (available_filter_functions, else
    // /proc/kallsyms text symbols, minus the kprobe blacklist).
    std::set<std::string> kprobe_symbols;
};

enum class Mechanism { None, Fentry, Fexit, Kprobe, Kretprobe, TpBtf, RawTp };
[[nodiscard]] const char* mechanism_name(Mechanism m);  // "fentry", ..., "raw_tp"; "none"

struct ProbeChoice {
    Mechanism mechanism = Mechanism::None;
    std::string reason;  // why None
    // Another spec for the same function and kind (a variant written for
    // another kernel's signature, e.g. 5.10's try_remove_memory(nid, start,
    // size)) was chosen instead: not a missing probe, left out of reports.
    bool superseded = false;
    [[nodiscard]] bool available() const { return mechanism != Mechanism::None; }
    // True for fentry/fexit/tp_btf.
    [[nodiscard]] bool btf_family() const;
};

// One choice per spec, same order. Specs with a signature sharing a target
// and kind are variants for different signatures: the one the kernel's BTF signature
// matches is planned and the rest are `superseded`; when none matches (or
// the signature is unknown), the first stands for the group. Never throws:
// what cannot attach is
// reported with a reason (the caller decides whether a required probe's
// absence is fatal).
[[nodiscard]] std::vector<ProbeChoice> plan_attach(const std::vector<ProbeSpec>& probes, const KernelFeatures& k,
                                                   AttachMode mode);

}  // namespace memhp::collector
