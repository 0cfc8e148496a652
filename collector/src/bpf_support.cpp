// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/bpf_support.hpp"

#include <bpf/libbpf.h>
#include <sys/capability.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "memhp/files.hpp"

namespace memhp::collector {
namespace {
std::mutex g_log_mutex;
std::string g_log;
bool g_verbose = false;

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
    // Debug lines (hundreds per load) are kept nowhere unless asked for.
    if (level == LIBBPF_DEBUG && !g_verbose) return 0;
    // The verifier's log arrives as one long message: size the buffer to it.
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n <= 0) return 0;
    std::string buf(static_cast<std::size_t>(n) + 1, '\0');
    std::vsnprintf(buf.data(), buf.size(), fmt, args);
    buf.resize(static_cast<std::size_t>(n));
    if (g_verbose) std::fputs(buf.c_str(), stderr);
    if (level == LIBBPF_DEBUG) return 0;
    std::lock_guard lock(g_log_mutex);
    g_log += buf;
    if (g_log.size() > 65536) g_log.erase(0, g_log.size() - 65536);
    return 0;
}

bool has_cap(cap_value_t cap) {
    cap_t caps = cap_get_proc();
    if (!caps) return false;
    cap_flag_value_t v = CAP_CLEAR;
    cap_get_flag(caps, cap, CAP_EFFECTIVE, &v);
    cap_free(caps);
    return v == CAP_SET;
}
}  // namespace

void install_libbpf_logging(bool verbose) {
    g_verbose = verbose;
    libbpf_set_print(libbpf_print);
}

std::string libbpf_log_tail(std::size_t lines) {
    std::lock_guard lock(g_log_mutex);
    return last_lines(g_log, lines);
}

void clear_libbpf_log() {
    std::lock_guard lock(g_log_mutex);
    g_log.clear();
}

void check_bpf_prerequisites(const std::string& sys_root) {
    namespace fs = std::filesystem;
    const fs::path root(sys_root);
    // Privileges first: a non-root user gets the one remedy that applies to
    // everyone before any kernel-specific one.
    if (sys_root == "/" && ::geteuid() != 0) {
#ifdef CAP_BPF
        const bool bpf = has_cap(CAP_BPF);
#else
        const bool bpf = has_cap(CAP_SYS_ADMIN);
#endif
#ifdef CAP_PERFMON
        const bool perfmon = has_cap(CAP_PERFMON);
#else
        const bool perfmon = has_cap(CAP_SYS_ADMIN);
#endif
        if (!(bpf && perfmon) && !has_cap(CAP_SYS_ADMIN))
            throw BpfError(
                "memhp needs root, or the capabilities CAP_BPF and CAP_PERFMON, to load its probes: "
                "run it with sudo, or grant them (e.g. systemd AmbientCapabilities=CAP_BPF CAP_PERFMON).");
    }
    if (!fs::exists(root / "sys/kernel/btf/vmlinux"))
        throw BpfError("this kernel exposes no BTF (" + (root / "sys/kernel/btf/vmlinux").string() +
                       " is missing): memhp's CO-RE probes need it. Boot a kernel built with "
                       "CONFIG_DEBUG_INFO_BTF=y (Debian's 6.1 and 6.12 kernels have it).");
    if (!fs::exists(root / "sys/devices/system/memory"))
        throw BpfError("this kernel has no memory hot-plug support (" + (root / "sys/devices/system/memory").string() +
                       " is missing): boot a kernel with CONFIG_MEMORY_HOTPLUG=y.");
}

}  // namespace memhp::collector
