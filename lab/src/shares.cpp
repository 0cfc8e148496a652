// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/shares.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <system_error>

#include "memhp/error.hpp"

namespace fs = std::filesystem;

namespace memhp::lab {

// What the guest's programs read from /etc: the dynamic linker's cache and
// configuration, the alternatives symlinks much of /usr/bin points through,
// user and group names (setpriv, ls), the shell's profile for `memhp lab
// --keep`, and ndctl's configuration for --dax. Nothing else of the host's
// /etc reaches a guest.
const std::vector<std::string> kGuestEtc = {
    "alternatives", "bash.bashrc",  "debian_version", "environment", "group",        "host.conf", "hostname",
    "hosts",        "inputrc",      "ld.so.cache",    "ld.so.conf",  "ld.so.conf.d", "localtime", "mtab",
    "ndctl",        "ndctl.conf.d", "nsswitch.conf",  "os-release",  "passwd",       "profile",   "profile.d",
    "protocols",    "services",     "shells",         "terminfo",
};

namespace {

bool carryable(const fs::path& p) { return p.string().find('\n') == std::string::npos; }

// Under `outer` or the same directory.
bool within(const fs::path& inner, const fs::path& outer) {
    auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
    return o == outer.end();
}

bool world_readable(const fs::path& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return false;
    if (S_ISLNK(st.st_mode)) return true;  // a link carries no data; its target is judged where it points
    const mode_t need = S_ISDIR(st.st_mode) ? (S_IROTH | S_IXOTH) : S_IROTH;
    return (st.st_mode & need) == need && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode));
}

void copy_entry(const fs::path& from, const fs::path& to) {
    if (!world_readable(from)) return;
    std::error_code ec;
    if (fs::is_symlink(from)) {
        fs::copy_symlink(from, to, ec);
    } else if (fs::is_directory(from)) {
        fs::create_directory(to, ec);
        if (!ec)
            for (const auto& e : fs::directory_iterator(from, ec)) copy_entry(e.path(), to / e.path().filename());
    } else {
        fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    }
    if (ec && ec != std::errc::no_such_file_or_directory)
        throw Error("cannot stage " + from.string() + " for the guest's /etc in " + to.string() + ": " + ec.message());
}

}  // namespace

void stage_guest_etc(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    fs::create_directories(to, ec);
    if (ec) throw Error("cannot create " + to.string() + " (the guest's /etc): " + ec.message());
    for (const auto& name : kGuestEtc) {
        const auto src = from / name;
        if (fs::exists(fs::symlink_status(src))) copy_entry(src, to / name);
    }
}

SharePlan plan_shares(const fs::path& root, const fs::path& bin_dir, const fs::path& modules_dir,
                      const fs::path& etc_stage) {
    SharePlan plan;
    std::vector<std::pair<fs::path, fs::path>> want;  // host, guest
    want.emplace_back(root / "usr", "/usr");
    // A merged-/usr host (every Debian 12) has /bin, /lib, ... as symlinks into
    // /usr; an older layout has them as directories, shared as they are.
    for (const char* top : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
        const auto p = root / top;
        std::error_code ec;
        if (fs::is_symlink(p, ec)) {
            plan.links.push_back({top, fs::read_symlink(p, ec)});
            if (ec) throw Error("cannot read the symlink " + p.string() + ": " + ec.message());
        } else if (fs::is_directory(p, ec)) {
            want.emplace_back(p, fs::path("/") / top);
        }
    }
    want.emplace_back(etc_stage, "/etc");
    want.emplace_back(bin_dir, bin_dir);
    // The guest finds the modules where the host's code names them
    // (KernelImage::modules_dir); the share exports the real directory, as
    // a kernel package extracted on a merged-/usr layout (trixie's and sid's)
    // has lib/modules/VERSION as a link into usr/lib/modules.
    if (!modules_dir.empty()) want.emplace_back(fs::weakly_canonical(modules_dir), modules_dir.lexically_normal());
    std::sort(want.begin(), want.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    for (const auto& entry : want) {
        // Not a structured binding: clang 14 cannot capture one in the lambda below.
        const fs::path& host = entry.first;
        const fs::path& guest = entry.second;
        if (!carryable(host) || !carryable(guest))
            throw Error("cannot share " + host.string() + " with a guest: its path holds a newline; move it");
        const bool inside = std::any_of(plan.shares.begin(), plan.shares.end(), [&](const HostShare& s) {
            return within(guest, s.guest) && within(host, s.host);
        });
        if (inside) continue;
        plan.shares.push_back({"memhp" + std::to_string(plan.shares.size()), host, guest});
    }
    return plan;
}

std::string share_table(const SharePlan& plan) {
    std::string t;
    for (const auto& l : plan.links) t += "link " + l.name + " " + l.target.string() + "\n";
    for (const auto& s : plan.shares) t += "share " + s.tag + " " + s.guest.string() + "\n";
    return t;
}

std::string virtfs_arg(const std::string& tag, const fs::path& host) {
    std::string path;
    for (const char c : host.string()) {
        path += c;
        if (c == ',') path += ',';
    }
    return "local,path=" + path + ",mount_tag=" + tag + ",security_model=none,readonly=on,multidevs=remap";
}

}  // namespace memhp::lab
