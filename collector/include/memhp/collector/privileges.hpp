// SPDX-License-Identifier: Apache-2.0
#pragma once
// Least privilege after attach. Loading and attaching BPF needs CAP_BPF,
// CAP_PERFMON (and CAP_SYSLOG for /proc/kallsyms addresses, CAP_SYS_ADMIN on
// older kernels); what comes after does not: the ring buffer is read through
// mmap and epoll, the skeleton's .bss through mmap, and BPF_OBJ_GET_INFO_BY_FD
// (the exporter's run-time metrics) fills run_time_ns/run_cnt for anyone who
// holds the fd (kernel/bpf/syscall.c: with unprivileged_bpf_disabled only
// BPF_MAP_CREATE and BPF_PROG_LOAD need bpf_capable(); 6.1 and later). So
// memhp trace and memhp-exporter drop every capability once attached.
#include <string>

namespace memhp::collector {

struct PrivilegeDrop {
    bool bounding_cleared = false;  // needed CAP_SETPCAP; false when it was not held
    bool no_new_privs = false;      // PR_SET_NO_NEW_PRIVS is set
    std::string before;             // the effective set before, in cap_to_text form ("=ep" for root)
};

// Empties the effective, permitted, inheritable and ambient sets (and the
// bounding set when CAP_SETPCAP allows), locks root's special treatment off
// (SECBIT_NOROOT, so an execve as uid 0 regains nothing) and sets
// PR_SET_NO_NEW_PRIVS. Capabilities are per thread: call it while the process
// has one thread (before any server starts); it throws Error when there are
// more, or when a step fails, saying which.
PrivilegeDrop drop_all_capabilities();

// What memhp trace and memhp-exporter do once attached: drop_all_capabilities()
// unless `keep` (--keep-capabilities); returns the log text, "dropped (were =ep)"
// or "kept (--keep-capabilities)".
[[nodiscard]] std::string drop_capabilities_after_attach(bool keep);

// "CapEff:\t0000000000000000"-style fields of /proc/<pid>/status for every
// thread of this process, as "tid: CapEff=... CapPrm=..." lines; for the log
// and the tests.
[[nodiscard]] std::string capability_status();

// Number of threads of this process (/proc/self/status Threads:).
[[nodiscard]] int thread_count();

}  // namespace memhp::collector
