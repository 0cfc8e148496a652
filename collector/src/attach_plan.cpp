// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/attach_plan.hpp"

#include "memhp/error.hpp"

namespace memhp::collector {

const char* attach_mode_name(AttachMode m) {
    switch (m) {
        case AttachMode::Auto: return "auto";
        case AttachMode::Fentry: return "fentry";
        case AttachMode::Kprobe: return "kprobe";
    }
    return "unknown";
}

AttachMode parse_attach_mode(std::string_view s) {
    if (s == "auto") return AttachMode::Auto;
    if (s == "fentry") return AttachMode::Fentry;
    if (s == "kprobe") return AttachMode::Kprobe;
    throw UsageError("unknown attach mode '" + std::string(s) + "': use auto, fentry or kprobe");
}

const char* mechanism_name(Mechanism m) {
    switch (m) {
        case Mechanism::None: return "none";
        case Mechanism::Fentry: return "fentry";
        case Mechanism::Fexit: return "fexit";
        case Mechanism::Kprobe: return "kprobe";
        case Mechanism::Kretprobe: return "kretprobe";
        case Mechanism::TpBtf: return "tp_btf";
        case Mechanism::RawTp: return "raw_tp";
    }
    return "unknown";
}

bool ProbeChoice::btf_family() const {
    return mechanism == Mechanism::Fentry || mechanism == Mechanism::Fexit || mechanism == Mechanism::TpBtf;
}

namespace {

// nullopt when fentry/fexit can attach to `fn`, else why not.
std::optional<std::string> fentry_obstacle(const std::string& fn, const KernelFeatures& k) {
    if (!k.fentry_works)
        return k.fentry_refused ? "the kernel refused BPF trampolines at the first fentry attach (not supported)"
                                : "fentry does not work on this kernel (a trial fentry program did not load)";
    if (!k.btf_functions.contains(fn)) return "not in the kernel's BTF (renamed, inlined or static duplicate)";
    if (k.traceable && !k.traceable->contains(fn))
        return "not traceable (no ftrace site: notrace or __meminit, e.g. vmemmap_populate before 6.11)";
    return std::nullopt;
}

std::optional<std::string> kprobe_obstacle(const std::string& fn, const KernelFeatures& k) {
    if (!k.kprobe_symbols.contains(fn))
        return k.traceable && !k.traceable->contains(fn)
                   ? "no kprobe either (kprobe events refuse notrace functions)"
                   : "no kprobe-able symbol of that name (inlined, or on the kprobe blacklist)";
    return std::nullopt;
}

// nullopt when the kernel's BTF signature of the function is the one memhp's
// programs are written for (or is unknown), else how it differs.
std::optional<std::string> signature_obstacle(const ProbeSpec& p, const KernelFeatures& k) {
    auto it = k.btf_sigs.find(p.target);
    if (p.sig.empty() || it == k.btf_sigs.end()) return std::nullopt;
    const std::string& have = it->second;
    const bool ok = p.exact ? have == p.sig : have.compare(0, p.sig.size(), p.sig) == 0;
    if (ok) return std::nullopt;
    return "its parameters differ on this kernel (BTF: " + std::to_string(have.size()) + " parameters, kinds " +
           (have.empty() ? "none" : have) + "; memhp's programs read " + p.sig +
           "): another version of the function, not traced";
}

ProbeChoice plan_function(const ProbeSpec& p, const KernelFeatures& k, AttachMode mode) {
    const bool entry = p.kind == ProbeKind::Entry;
    const Mechanism btf = entry ? Mechanism::Fentry : Mechanism::Fexit;
    const Mechanism classic = entry ? Mechanism::Kprobe : Mechanism::Kretprobe;
    const auto no_sig = signature_obstacle(p, k);
    auto no_fentry = no_sig ? no_sig : fentry_obstacle(p.target, k);
    if (!no_fentry && k.fentry_unloadable.contains(p.target))
        no_fentry = "fentry cannot take its parameters on this kernel (a struct passed by value)";
    auto no_kprobe = no_sig && p.classic_reads_args ? no_sig : kprobe_obstacle(p.target, k);
    switch (mode) {
        case AttachMode::Fentry:
            if (!no_fentry) return {btf, ""};
            return {Mechanism::None, "fentry mode forced: " + *no_fentry};
        case AttachMode::Kprobe:
            if (!no_kprobe) return {classic, ""};
            return {Mechanism::None, "kprobe mode forced: " + *no_kprobe};
        case AttachMode::Auto:
            if (!no_fentry) return {btf, ""};
            if (!no_kprobe) return {classic, ""};
            // The fentry reason comes first: it is usually the root cause.
            if (*no_fentry == *no_kprobe) return {Mechanism::None, *no_fentry};
            return {Mechanism::None, *no_fentry + "; " + *no_kprobe};
    }
    return {Mechanism::None, "unknown attach mode"};
}

ProbeChoice plan_tracepoint(const ProbeSpec& p, const KernelFeatures& k, AttachMode mode) {
    const bool has_btf = k.btf_tracepoints.contains(p.target);
    const bool has_raw = has_btf || k.tracepoints.contains(p.target);  // a BTF typedef implies the tracepoint
    switch (mode) {
        case AttachMode::Fentry:
            if (has_btf) return {Mechanism::TpBtf, ""};
            return {Mechanism::None, "fentry mode forced: no btf_trace_" + p.target + " in the kernel's BTF"};
        case AttachMode::Kprobe:
            if (has_raw) return {Mechanism::RawTp, ""};
            return {Mechanism::None, "kprobe mode forced: no tracepoint " + p.target + " in this kernel"};
        case AttachMode::Auto:
            if (has_btf) return {Mechanism::TpBtf, ""};
            if (has_raw) return {Mechanism::RawTp, ""};
            return {Mechanism::None, "no tracepoint " + p.target + " in this kernel"};
    }
    return {Mechanism::None, "unknown attach mode"};
}

}  // namespace

std::vector<ProbeChoice> plan_attach(const std::vector<ProbeSpec>& probes, const KernelFeatures& k, AttachMode mode) {
    // Per (target, kind): the variant whose signature the kernel has, else the first.
    // Only specs that read parameters (a signature) can be variants of each other.
    std::map<std::pair<std::string, ProbeKind>, std::size_t> chosen;
    for (std::size_t i = 0; i < probes.size(); ++i) {
        if (probes[i].sig.empty()) continue;
        const auto key = std::make_pair(probes[i].target, probes[i].kind);
        auto [it, fresh] = chosen.emplace(key, i);
        if (!fresh && signature_obstacle(probes[it->second], k) && !signature_obstacle(probes[i], k)) it->second = i;
    }
    std::vector<ProbeChoice> out;
    out.reserve(probes.size());
    for (std::size_t i = 0; i < probes.size(); ++i) {
        const auto& p = probes[i];
        if (!p.sig.empty() && chosen.at({p.target, p.kind}) != i) {
            out.push_back({Mechanism::None, "a variant for another signature of " + p.target + " is used", true});
            continue;
        }
        out.push_back(p.kind == ProbeKind::Tracepoint ? plan_tracepoint(p, k, mode) : plan_function(p, k, mode));
    }
    return out;
}

}  // namespace memhp::collector
