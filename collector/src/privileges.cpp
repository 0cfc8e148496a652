// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/privileges.hpp"

#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace memhp::collector {
namespace {

// /proc/PID/status is about 1.5 KiB; anything near this is not procfs.
constexpr std::size_t kStatusMax = 1 << 20;

[[noreturn]] void fail(const std::string& what) {
    throw Error("cannot drop privileges: " + what + ": " + std::strerror(errno));
}

std::string status_field(const std::string& status, const std::string& key) {
    std::istringstream in(status);
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with(key + ":")) return trim(line.substr(key.size() + 1));
    return {};
}

}  // namespace

int thread_count() {
    const auto status = try_read_file("/proc/self/status", kStatusMax);
    if (!status) return -1;
    const auto n = status_field(*status, "Threads");
    return n.empty() ? -1 : std::stoi(n);
}

PrivilegeDrop drop_all_capabilities() {
    PrivilegeDrop out;
    // Capabilities belong to threads: another thread would keep them. A
    // thread just joined (the kallsyms reader) can linger in the count for a
    // moment after join() returns, so give it a little time to go.
    int n = thread_count();
    for (int i = 0; n > 1 && i < 25; ++i) {
        ::usleep(2000);
        n = thread_count();
    }
    if (n != 1) {
        errno = 0;
        throw Error("cannot drop privileges: the process has " + std::to_string(n) +
                    " threads (a bug: the drop must come before any server thread starts)");
    }
    cap_t now = cap_get_proc();
    if (!now) fail("cap_get_proc");
    if (char* text = cap_to_text(now, nullptr)) {
        out.before = text;
        cap_free(text);
    }
    cap_flag_value_t setpcap = CAP_CLEAR;
    cap_get_flag(now, CAP_SETPCAP, CAP_EFFECTIVE, &setpcap);
    cap_free(now);

    if (setpcap == CAP_SET) {
        // uid 0 would get a full set back at its next execve: turn that off
        // and lock it, then empty the bounding set (both need CAP_SETPCAP).
        const unsigned bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                              SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
        if (cap_set_secbits(static_cast<int>(bits)) != 0) fail("cap_set_secbits(SECBIT_NOROOT...)");
        for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c)
            if (CAP_IS_SUPPORTED(c) && cap_drop_bound(c) != 0) fail("cap_drop_bound(" + std::to_string(c) + ")");
        out.bounding_cleared = true;
    }
    if (cap_reset_ambient() != 0 && errno != EINVAL) fail("cap_reset_ambient");
    cap_t none = cap_init();  // all three sets empty
    if (!none) fail("cap_init");
    const int r = cap_set_proc(none);
    cap_free(none);
    if (r != 0) fail("cap_set_proc(empty)");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_NO_NEW_PRIVS)");
    out.no_new_privs = true;
    return out;
}

std::string drop_capabilities_after_attach(bool keep) {
    if (keep) return "kept (--keep-capabilities)";
    const auto drop = drop_all_capabilities();
    return "dropped (were " + (drop.before.empty() ? std::string("?") : drop.before) + ")";
}

std::string capability_status() {
    std::string out;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        const auto status = try_read_file(task.path() / "status", kStatusMax);
        if (!status) continue;
        out += task.path().filename().string() + ":";
        for (const char* key : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"})
            out += std::string(" ") + key + "=" + status_field(*status, key);
        out += "\n";
    }
    return out;
}

}  // namespace memhp::collector
