#pragma once
// Guest kernels: Debian linux-image packages fetched with `apt-get download`,
// unpacked with `dpkg-deb -x` into the cache (never into /boot), modules
// indexed with `depmod -b`. A bzImage path is accepted too (e.g. our patched
// kernel, whose drivers are built in).
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
    fs::path vmlinuz;
    fs::path modules_dir;  // <root>/lib/modules/<release>; empty: no modules
    fs::path config;       // the kernel's .config when known
};

// How a --kernel value is to be resolved.
struct KernelRequest {
    enum class Kind { MetaPackage, Package, File, Patched };
    Kind kind;
    std::string name;  // the meta package, the package, the path, or the kernel-patches/ series
};

// "6.1" -> meta linux-image-amd64 (bookworm's default kernel);
// "6.12" -> meta linux-image-6.12-amd64; "linux-image-..." -> that package;
// an existing file or anything with a '/' -> File; "patched", "patched-6.1",
// "patched-7.2" -> Patched with the series (the kernel built from
// kernel-patches/<series>/). Throws UsageError otherwise.
[[nodiscard]] KernelRequest classify_kernel_spec(std::string_view spec);

// The series of kernel-patches/ that "patched" is (kernel-patches/build.sh's
// default).
inline constexpr std::string_view kDefaultPatchedSeries = "6.1";

// "patched" -> the default series, "patched-7.2" -> "7.2" (when
// kernel-patches/7.2/ exists; UsageError if not), anything else -> nullopt.
[[nodiscard]] std::optional<std::string> patched_series(std::string_view spec);

// The first "Depends: linux-image-..." of `apt-cache depends` output.
[[nodiscard]] std::optional<std::string> parse_depends_image(std::string_view apt_cache_depends);

// The release (uname -r) from an unpacked package's boot/vmlinuz-<release>.
[[nodiscard]] std::optional<std::string> release_from_boot_dir(const fs::path& boot_dir);

// kernel-patches/build.sh: $MEMHP_KERNEL_PATCHES/build.sh if set, else the
// source tree's (the lab runs from the build tree).
[[nodiscard]] fs::path patched_kernel_script();

// A patched-kernel cache entry's memhp-kernel.txt ("source linux-source-6.1
// 6.1.192-2", "release 6.1.192", ...) as a KernelImage rooted at `entry`.
[[nodiscard]] KernelImage patched_kernel_entry(const fs::path& entry, std::string_view meta);

class KernelCache {
public:
    explicit KernelCache(fs::path root, Progress progress = {});
    // Resolves `spec` and makes sure the kernel is unpacked in the cache.
    // Throws Error with what to do when the package cannot be found or fetched.
    [[nodiscard]] KernelImage ensure(std::string_view spec);
    [[nodiscard]] const fs::path& root() const { return root_; }
    [[nodiscard]] fs::path entry_dir(const std::string& package) const;

private:
    KernelImage ensure_patched(const std::string& spec, const std::string& series);
    std::string resolve_meta(const std::string& meta);
    KernelImage load_entry(const std::string& spec, const std::string& package);
    void fetch(const std::string& package);
    fs::path root_;
    Progress progress_;
};

}  // namespace memhp::lab
