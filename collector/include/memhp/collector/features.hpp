// SPDX-License-Identifier: Apache-2.0
#pragma once
// Feature probing in user space, as libbpf-tools keeps it in trace_helpers.c:
// the kernel's BTF, tracefs, whether a trial fentry program loads, which
// probe targets the kernel has, and whether it carries memhp's
// memory_hotplug trace events. The decisions (attach_plan.hpp) are made
// from what these find; nothing here loads memhp's own programs.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "memhp/collector/attach_plan.hpp"

struct btf;

namespace memhp::collector {

struct KallsymsInfo;  // kernel_symbols.hpp

// The running kernel's BTF, or BpfError saying how to get one.
using KernelBtf = std::unique_ptr<btf, void (*)(btf*)>;
[[nodiscard]] KernelBtf load_kernel_btf();

// Where tracefs is mounted ("/sys/kernel/tracing" or the debugfs one), or
// empty when neither lists the traceable functions.
[[nodiscard]] std::filesystem::path tracefs_dir();

// Half of libbpf-tools' fentry_can_attach(): whether a two-instruction fentry
// program loads against `btf_id`. The attach half is left to memhp's own
// first fentry program (FunctionProbes).
[[nodiscard]] bool fentry_loads(int btf_id);

// True when fentry/fexit will take every function of `specs` in `mode`, so
// neither tracefs' function list nor kprobe candidates are needed.
[[nodiscard]] bool fentry_settles(const std::vector<ProbeSpec>& specs, AttachMode mode, const KernelFeatures& k);

// What the kernel offers for `specs`, all but kprobe_symbols (see
// add_kprobe_symbols). Reads only what the decision needs: tracefs' function
// list (large and slow to generate) only when fentry alone cannot settle it,
// and then beside the trial load.
[[nodiscard]] KernelFeatures probe_features(const std::vector<ProbeSpec>& specs, AttachMode mode, const btf* vmlinux);

// The functions of `specs` a kprobe can take, minus the kprobe blacklist:
// the traceable ones when tracefs' list was read, else kernel text symbols
// from /proc/kallsyms (`syms`, read only then). Neither: nothing to do.
void add_kprobe_symbols(KernelFeatures& k, const std::vector<ProbeSpec>& specs, const KallsymsInfo* syms);

// True when `vmlinux_btf` (the running kernel's) has the memory_hotplug
// trace events, i.e. the kernel was built with memhp's patches.
[[nodiscard]] bool has_hotplug_tracepoints(const btf* vmlinux_btf);

// The BTF type a tp_btf program on `event` attaches through.
[[nodiscard]] std::string btf_trace_type(const std::string& event);

}  // namespace memhp::collector
