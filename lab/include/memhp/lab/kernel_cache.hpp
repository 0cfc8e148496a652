// SPDX-License-Identifier: Apache-2.0
#pragma once
// Guest kernels: Debian kernel packages of bullseye (5.10), bookworm (6.1),
// trixie (6.12) and sid (7.2, "latest"), fetched with `apt-get download`
// through an apt configuration of memhp's own under the cache (its own
// sources.list, lists and archives per suite; the system's sources are never
// read or changed), unpacked with `dpkg-deb -x` into the cache (never into
// /boot), modules indexed with `depmod -b`. Both packagings are handled: the
// classic linux-image-* (boot/vmlinuz-*, boot/config-*, lib/modules/) and
// sid's split linux-binary-*/linux-modules-*/linux-base-* (everything under
// usr/lib/modules/<release>/). A bzImage path is accepted too (e.g. our
// patched kernel, whose drivers are built in).
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memhp::lab {

namespace fs = std::filesystem;
using Progress = std::function<void(const std::string&)>;

struct KernelImage {
    std::string spec;     // what was asked: "6.1", a package name, or a path
    std::string package;  // linux-image-6.1.0-56-amd64 (empty for a plain bzImage)
    std::string version;  // the package's version, e.g. 6.1.192-2
    std::string release;  // uname -r, e.g. 6.1.0-56-amd64
    std::string suite;    // the Debian suite it came from (empty: not from the archive)
    fs::path vmlinuz;
    fs::path modules_dir;  // <root>/lib/modules/<release>; empty: no modules
    fs::path config;       // the kernel's .config when known
};

// How a --kernel value is to be resolved.
struct KernelRequest {
    enum class Kind { MetaPackage, Package, File, Patched };
    Kind kind;
    std::string name;   // the meta package, the package, the path, or the kernel-patches/ series
    std::string suite;  // MetaPackage: the suite whose meta package it is
    // Patched: the series' source and lab config without its patches
    // ("unpatched-7.2"), the baseline that measures what the events cost.
    bool unpatched = false;
};

// The Debian suites memhp fetches kernels from, oldest first, with the
// series each one's linux-image-amd64 points at.
struct KernelSuite {
    std::string series;  // "5.10"
    std::string suite;   // "bullseye"
};
[[nodiscard]] const std::vector<KernelSuite>& kernel_suites();

// "5.10" -> linux-image-amd64 of bullseye, "6.1"/"default" -> of bookworm,
// "6.12" -> of trixie, "7.2"/"latest" -> of sid; "linux-image-..." -> that
// package (looked for in every suite); an existing file or anything with a
// '/' -> File; "patched", "patched-6.1", "patched-7.2" -> Patched with the
// series as name (the kernel built from kernel-patches/<series>/).
// Throws UsageError naming the choices otherwise.
[[nodiscard]] KernelRequest classify_kernel_spec(std::string_view spec);

// One package's stanza of `apt-cache show` (a Debian Packages entry).
struct PackageStanza {
    std::string package;
    std::string version;
    std::vector<std::string> depends;  // names only; of alternatives the first
};
// The first stanza of `text`; nullopt when it has no Package field.
[[nodiscard]] std::optional<PackageStanza> parse_package_stanza(std::string_view text);

// The kernel image a meta package (linux-image-amd64) depends on.
[[nodiscard]] std::optional<std::string> image_of_meta(const PackageStanza& meta);

// The packages whose contents make up the kernel of image package `image`:
// itself, plus for sid's split packaging its linux-binary-*,
// linux-modules-* and linux-base-* dependencies.
[[nodiscard]] std::vector<std::string> kernel_parts(const PackageStanza& image);

// The series of kernel-patches/ that "patched" is (kernel-patches/build.sh's
// default).
inline constexpr std::string_view kDefaultPatchedSeries = "6.1";

// "patched" -> the default series, "patched-7.2" -> "7.2" (when
// kernel-patches/7.2/ exists; UsageError if not), anything else -> nullopt.
[[nodiscard]] std::optional<std::string> patched_series(std::string_view spec);
// "unpatched-7.2" -> "7.2": the same source and lab config, no patches.
[[nodiscard]] std::optional<std::string> unpatched_series(std::string_view spec);

// The first "Depends: linux-image-..." of `apt-cache depends` output.
[[nodiscard]] std::optional<std::string> parse_depends_image(std::string_view apt_cache_depends);

// The release (uname -r) from an unpacked package's boot/vmlinuz-<release>.
[[nodiscard]] std::optional<std::string> release_from_boot_dir(const fs::path& boot_dir);

// Gives an unpacked kernel tree the classic layout the lab reads: for the
// split layout (usr/lib/modules/<release>/vmlinuz) adds boot/vmlinuz-<release>,
// boot/config-<release> and lib/modules/<release> as relative links. Returns
// the release; throws Error when the tree holds no kernel.
std::string normalize_kernel_tree(const fs::path& root);

// The Debian mirror (`security`: the security mirror) in the system's apt
// sources (deb822 "URIs:" or one-line "deb [opts] URI ..." entries);
// http://deb.debian.org/debian(-security) when none is found.
// debian_mirror(): $MEMHP_DEBIAN_MIRROR wins over the system's.
[[nodiscard]] std::string debian_mirror_from_sources(std::string_view sources_text, bool security);
[[nodiscard]] std::string debian_mirror();

// memhp's own apt configuration for `suite` under `dir`
// (<dir>/sources.list, lists/, cache/): the -o options for apt-get/apt-cache.
[[nodiscard]] std::vector<std::string> apt_options(const fs::path& dir);
// Its sources.list: `suite` main, and <suite>-security unless sid.
[[nodiscard]] std::string apt_sources_list(const std::string& mirror, const std::string& security,
                                           const std::string& suite);

// kernel-patches/build.sh: $MEMHP_KERNEL_PATCHES/build.sh if set, else the
// source tree's (the lab runs from the build tree).
[[nodiscard]] fs::path patched_kernel_script();

// A patched-kernel cache entry's memhp-kernel.txt ("source linux-source-6.1
// 6.1.192-2", "release 6.1.192", ...) as a KernelImage rooted at `entry`.
[[nodiscard]] KernelImage patched_kernel_entry(const fs::path& entry, std::string_view meta);

// True when the kernel's config (CONFIG_x=y or =m lines) has `option`
// ("MHP_MEMMAP_ON_MEMORY"); nullopt when the config is unknown.
[[nodiscard]] std::optional<bool> kernel_config_has(const KernelImage& k, std::string_view option);

class KernelCache {
public:
    explicit KernelCache(fs::path root, Progress progress = {});
    // Resolves `spec` and makes sure the kernel is unpacked in the cache.
    // Throws Error with what to do when the package cannot be found or fetched.
    [[nodiscard]] KernelImage ensure(std::string_view spec);
    [[nodiscard]] const fs::path& root() const { return root_; }
    [[nodiscard]] fs::path entry_dir(const std::string& package) const;
    // <root>/apt/<suite>: memhp's apt configuration for the suite.
    [[nodiscard]] fs::path apt_dir(const std::string& suite) const;

private:
    KernelImage ensure_patched(const std::string& spec, const std::string& series, bool unpatched = false);
    // Package lists of `suite` younger than a day (apt-get update otherwise,
    // or when `force`); false when they could not be fetched.
    bool update_lists(const std::string& suite, bool force, std::string* why);
    std::optional<PackageStanza> show(const std::string& suite, const std::string& package);
    std::string resolve_meta(const std::string& suite, const std::string& meta);
    std::string find_suite(const std::string& package);
    std::string current_kernels_hint();
    KernelImage load_entry(const std::string& spec, const std::string& package);
    void fetch(const std::string& suite, const std::string& package);
    fs::path root_;
    Progress progress_;
};

}  // namespace memhp::lab
