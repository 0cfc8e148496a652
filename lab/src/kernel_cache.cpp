#include "memhp/lab/kernel_cache.hpp"

#include <algorithm>
#include <regex>
#include <sstream>

#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"
#include "memhp/stop.hpp"

namespace memhp::lab {

std::optional<std::string> patched_series(std::string_view spec) {
    if (spec == "patched") return std::string(kDefaultPatchedSeries);
    if (!spec.starts_with("patched-")) return std::nullopt;
    const std::string series(spec.substr(8));
    static const std::regex version(R"(^\d+\.\d+$)");
    if (!std::regex_match(series, version))
        throw UsageError("unknown kernel '" + std::string(spec) + "': patched-<series> takes a series of kernel-patches/ "
                         "such as patched-6.1 or patched-7.2");
    const fs::path folder = patched_kernel_script().parent_path() / series;
    if (!fs::exists(folder / "series"))
        throw UsageError("unknown kernel '" + std::string(spec) + "': " + folder.string() +
                         " does not exist: use patched-6.1 or patched-7.2");
    return series;
}

KernelRequest classify_kernel_spec(std::string_view spec_view) {
    std::string spec(spec_view);
    if (spec.empty())
        throw UsageError("--kernel is empty: use 6.1, 6.12, patched, patched-7.2, a linux-image-* package or a "
                         "bzImage path");
    if (spec == "6.1" || spec == "default") return {KernelRequest::Kind::MetaPackage, "linux-image-amd64"};
    if (auto series = patched_series(spec)) return {KernelRequest::Kind::Patched, *series};
    static const std::regex series(R"(^(\d+)\.(\d+)$)");
    if (std::regex_match(spec, series)) return {KernelRequest::Kind::MetaPackage, "linux-image-" + spec + "-amd64"};
    static const std::regex pkg(R"(^linux-image-[a-z0-9.+~-]+$)");
    if (std::regex_match(spec, pkg)) return {KernelRequest::Kind::Package, spec};
    if (spec.find('/') != std::string::npos || fs::exists(spec)) return {KernelRequest::Kind::File, spec};
    throw UsageError("unknown kernel '" + spec +
                     "': use 6.1 (Debian 12's default), 6.12, patched or patched-6.1 (6.1 with memhp's "
                     "kernel-patches/), patched-7.2 (7.2 with them), "
                     "a Debian package name such as "
                     "linux-image-6.1.0-56-amd64, or the path of a bzImage");
}

std::optional<std::string> parse_depends_image(std::string_view text) {
    std::istringstream in{std::string(text)};
    std::string line;
    static const std::regex dep(R"(^\s*\|?Depends:\s*(linux-image-[^\s<>]+)\s*$)");
    while (std::getline(in, line)) {
        std::smatch m;
        if (std::regex_match(line, m, dep)) return m[1].str();
    }
    return std::nullopt;
}

std::optional<std::string> release_from_boot_dir(const fs::path& boot_dir) {
    std::error_code ec;
    for (const auto& ent : fs::directory_iterator(boot_dir, ec)) {
        auto name = ent.path().filename().string();
        if (name.starts_with("vmlinuz-")) return name.substr(8);
    }
    return std::nullopt;
}

KernelCache::KernelCache(fs::path root, Progress progress) : root_(std::move(root)), progress_(std::move(progress)) {
    fs::create_directories(root_);
}

fs::path KernelCache::entry_dir(const std::string& package) const { return root_ / package; }

std::string KernelCache::resolve_meta(const std::string& meta) {
    const fs::path memo = root_ / ("resolved-" + meta);
    RunResult r;
    try {
        r = run({"apt-cache", "depends", meta}, {.timeout = std::chrono::seconds(60)});
    } catch (const Error&) {
        r.exit_code = -1;
    }
    if (r.ok()) {
        if (auto image = parse_depends_image(r.out)) {
            write_file_atomic(memo, *image);
            return *image;
        }
    }
    // Offline or no package lists: fall back to what was resolved last time.
    if (auto cached = try_read_file(memo); cached && !trim(*cached).empty()) {
        if (progress_) progress_("note: apt-cache could not resolve " + meta + "; using the cached " + trim(*cached));
        return trim(*cached);
    }
    throw Error("cannot resolve the kernel meta package " + meta +
                " with apt-cache (no such package in the package lists?). Run 'apt-get update' "
                "(scripts/install-deps.sh does) or name a linux-image package explicitly.");
}

namespace {
// "6.1 = linux-image-6.1.0-56-amd64, 6.12 = linux-image-6.12.117+deb12-amd64"
std::string current_kernels_hint() {
    std::string out;
    for (const char* series : {"6.1", "6.12"}) {
        std::string name = classify_kernel_spec(series).name;
        try {
            auto r = run({"apt-cache", "depends", name}, {.timeout = std::chrono::seconds(30)});
            if (auto image = parse_depends_image(r.out))
                out += (out.empty() ? "" : ", ") + std::string(series) + " = " + *image;
        } catch (const Error&) {
        }
    }
    return out.empty() ? "unknown (apt-cache found none: run apt-get update)" : out;
}
}  // namespace

void KernelCache::fetch(const std::string& package) {
    const fs::path final_dir = entry_dir(package);
    const fs::path tmp = root_ / (package + ".partial");
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp / "root");
    if (progress_) progress_("fetching " + package + " with apt-get download (into " + root_.string() + ")");
    // Let the _apt sandbox user write the .deb (avoids apt's unsandboxed warning).
    fs::permissions(tmp, fs::perms::all, ec);
    auto r = run({"apt-get", "download", package}, {.timeout = std::chrono::minutes(10), .cwd = tmp});
    if (!r.ok()) {
        std::string why = last_lines(r.err.empty() ? r.out : r.err, 3);
        std::string hint;
        if (why.find("Unable to locate") != std::string::npos || why.find("has no installation candidate") != std::string::npos)
            hint = "\n" + package + " is not in the Debian archive known to apt. The archive's current kernels: " +
                   current_kernels_hint() +
                   "\nUse --kernel 6.1 or --kernel 6.12 to take the archive's current one.";
        fs::remove_all(tmp, ec);
        throw Error("cannot fetch kernel package " + package + ": " + why + hint);
    }
    fs::path deb;
    for (const auto& ent : fs::directory_iterator(tmp))
        if (ent.path().extension() == ".deb") deb = ent.path();
    if (deb.empty()) throw Error("apt-get download " + package + " produced no .deb in " + tmp.string());
    std::string version = trim(run_checked({"dpkg-deb", "-f", deb.string(), "Version"}));
    if (progress_) progress_("unpacking " + deb.filename().string());
    run_checked({"dpkg-deb", "-x", deb.string(), (tmp / "root").string()}, {.timeout = std::chrono::minutes(5)});
    auto release = release_from_boot_dir(tmp / "root" / "boot");
    if (!release) throw Error(package + " contains no boot/vmlinuz-*: not a kernel image package?");
    if (fs::exists(tmp / "root" / "lib" / "modules" / *release)) {
        auto depmod = find_program("depmod");
        if (!depmod) throw Error("depmod is not installed (Debian package kmod): run scripts/install-deps.sh");
        run_checked({depmod->string(), "-b", (tmp / "root").string(), *release});
    }
    fs::remove(deb);
    write_file(tmp / "root" / "memhp-kernel.txt", package + "\n" + version + "\n" + *release + "\n");
    fs::remove_all(final_dir, ec);
    fs::rename(tmp / "root", final_dir);
    fs::remove_all(tmp, ec);
}

KernelImage KernelCache::load_entry(const std::string& spec, const std::string& package) {
    const fs::path dir = entry_dir(package);
    auto meta = try_read_file(dir / "memhp-kernel.txt");
    if (!meta) return {};
    std::istringstream in(*meta);
    KernelImage k;
    k.spec = spec;
    std::getline(in, k.package);
    std::getline(in, k.version);
    std::getline(in, k.release);
    k.vmlinuz = dir / "boot" / ("vmlinuz-" + k.release);
    k.config = dir / "boot" / ("config-" + k.release);
    if (fs::exists(dir / "lib" / "modules" / k.release / "modules.dep")) k.modules_dir = dir / "lib" / "modules" / k.release;
    if (!fs::exists(k.vmlinuz)) return {};
    return k;
}

fs::path patched_kernel_script() {
    if (const char* d = std::getenv("MEMHP_KERNEL_PATCHES"); d && *d) return fs::path(d) / "build.sh";
    return fs::path(MEMHP_SOURCE_DIR) / "kernel-patches" / "build.sh";
}

KernelImage patched_kernel_entry(const fs::path& entry, std::string_view meta) {
    KernelImage k;
    k.spec = "patched";
    k.vmlinuz = entry / "bzImage";
    k.config = entry / "config";
    std::istringstream in{std::string(meta)};
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string key, a, b;
        words >> key >> a >> b;
        if (key == "source") k.version = b;  // "source linux-source-6.1 6.1.192-2"
        if (key == "release") k.release = a;
    }
    if (k.release.empty()) k.release = "patched";
    return k;
}

// Builds (once) a kernel of kernel-patches/ (the series `series`) through its
// build.sh, which caches it outside the repo; its progress is passed on as it
// comes.
KernelImage KernelCache::ensure_patched(const std::string& spec, const std::string& series) {
    const fs::path script = patched_kernel_script();
    if (!fs::exists(script))
        throw Error(script.string() + " is missing: --kernel " + spec +
                    " needs memhp's source tree (or set MEMHP_KERNEL_PATCHES to its kernel-patches folder)");
    auto where =
        run({"bash", script.string(), "--series", series, "--print-dir"}, {.timeout = std::chrono::minutes(1)});
    const fs::path entry = trim(where.out);
    if (entry.empty() || (where.exit_code != 0 && where.exit_code != 3))
        throw Error(script.string() + " --print-dir failed: " + last_lines(where.err, 3));
    if (where.exit_code == 3) {
        if (progress_)
            progress_("building the patched " + series + " kernel (kernel-patches/" + series +
                      "/, about 10 min on 2 idle cores; once per version of the patches)");
        TempDir tmp("memhp-kbuild");
        const fs::path log = tmp.path() / "build.out";
        auto child = ChildProcess::spawn({"bash", script.string(), "--series", series}, log);
        std::size_t shown = 0;
        auto pass_on = [&] {
            auto text = try_read_file(log).value_or("");
            if (text.size() <= shown) return;
            auto end = text.rfind('\n');
            if (end == std::string::npos || end < shown) return;
            std::istringstream lines(text.substr(shown, end + 1 - shown));
            shown = end + 1;
            for (std::string l; std::getline(lines, l);)
                if (progress_ && l.starts_with("memhp-kernel: ")) progress_(l.substr(14));
        };
        while (!child.wait_for(std::chrono::seconds(1))) {
            pass_on();
            if (stop_requested()) {
                child.terminate();
                throw Interrupted();
            }
        }
        pass_on();
        if (child.exit_code().value_or(-1) != 0)
            throw Error("building the patched " + series + " kernel failed (" + script.string() + " --series " +
                        series + "):\n" +
                        last_lines(try_read_file(log).value_or(""), 12));
    }
    auto meta = try_read_file(entry / "memhp-kernel.txt");
    if (!meta || !fs::exists(entry / "bzImage"))
        throw Error("the patched kernel's cache entry " + entry.string() + " is incomplete: run " + script.string() +
                    " --series " + series + " --force");
    KernelImage k = patched_kernel_entry(entry, *meta);
    k.spec = spec;
    return k;
}

KernelImage KernelCache::ensure(std::string_view spec_view) {
    const std::string spec(spec_view);
    auto req = classify_kernel_spec(spec);
    if (req.kind == KernelRequest::Kind::Patched) return ensure_patched(spec, req.name);
    if (req.kind == KernelRequest::Kind::File) {
        if (!fs::is_regular_file(req.name))
            throw UsageError("kernel image " + req.name + " does not exist or is not a file");
        KernelImage k;
        k.spec = spec;
        k.vmlinuz = fs::absolute(req.name);
        k.release = "custom";
        auto cfg = k.vmlinuz.parent_path() / "config";
        if (fs::exists(cfg)) k.config = cfg;
        return k;
    }
    std::string package = req.kind == KernelRequest::Kind::MetaPackage ? resolve_meta(req.name) : req.name;
    FileLock lock(root_ / ".lock");
    KernelImage k = load_entry(spec, package);
    if (k.vmlinuz.empty()) {
        fetch(package);
        k = load_entry(spec, package);
        if (k.vmlinuz.empty()) throw Error("kernel cache entry for " + package + " is incomplete after fetching");
    }
    return k;
}

}  // namespace memhp::lab
