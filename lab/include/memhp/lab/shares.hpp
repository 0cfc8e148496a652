// SPDX-License-Identifier: Apache-2.0
#pragma once
// What of the host a lab guest sees over 9p: only what it runs, never the
// host's whole root. The guest boots a kernel under test as root, so the
// shares are read-only in QEMU and hold no secrets:
//   /usr (and /bin, /lib, ... as the host has them: symlinks or directories),
//   a staged /etc (an allow-list of world-readable files, no shadow, no keys),
//   the directory of the binaries it runs (memhp, memhp-agent, memhp-hog, ...),
//   the guest kernel's modules in the kernel cache, when it has any.
// The guest's init (lab/guest/init.sh) mounts each share at its path, as the
// lower layer of an overlay whose writes stay in guest RAM, on a tmpfs root.
#include <filesystem>
#include <string>
#include <vector>

namespace memhp::lab {

struct HostShare {
    std::string tag;              // the 9p mount tag
    std::filesystem::path host;   // the directory QEMU exports, read-only
    std::filesystem::path guest;  // where the guest mounts it
};

// A top-level symlink of the host's root, recreated in the guest (/bin -> usr/bin).
struct RootLink {
    std::string name;
    std::filesystem::path target;
};

struct SharePlan {
    std::vector<HostShare> shares;  // parents before children
    std::vector<RootLink> links;
};

// The shares for a guest. `root` is the host's root ("/"; a fixture in tests),
// `bin_dir` the directory of the binaries the guest runs, `modules_dir` the
// guest kernel's modules (empty: none), `etc_stage` the staged /etc
// (stage_guest_etc). A directory already inside another share is not shared
// twice. Throws Error for a path 9p or the guest's init cannot carry (a newline).
[[nodiscard]] SharePlan plan_shares(const std::filesystem::path& root, const std::filesystem::path& bin_dir,
                                    const std::filesystem::path& modules_dir, const std::filesystem::path& etc_stage);

// Copies the guest's /etc from `from` (the host's /etc) into `to`: the
// allow-list of kGuestEtc, symlinks as symlinks, and only what every user on
// the host may read already. Throws Error when `to` cannot be written.
void stage_guest_etc(const std::filesystem::path& from, const std::filesystem::path& to);
extern const std::vector<std::string> kGuestEtc;

// The table the guest's init reads from the meta share: one "share TAG PATH"
// or "link NAME TARGET" per line.
[[nodiscard]] std::string share_table(const SharePlan& plan);

// The 9p tag of the share that carries the table.
inline constexpr const char* kMetaShareTag = "memhpmeta";

// One QEMU -virtfs argument (read-only; commas in the path doubled, as QEMU's
// option syntax wants).
[[nodiscard]] std::string virtfs_arg(const std::string& tag, const std::filesystem::path& host);

}  // namespace memhp::lab
