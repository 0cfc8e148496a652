// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/kernel_cache.hpp"

#include <unistd.h>

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
        throw UsageError("unknown kernel '" + std::string(spec) +
                         "': patched-<series> takes a series of kernel-patches/ "
                         "such as patched-6.1 or patched-7.2");
    const fs::path folder = patched_kernel_script().parent_path() / series;
    if (!fs::exists(folder / "series"))
        throw UsageError("unknown kernel '" + std::string(spec) + "': " + folder.string() +
                         " does not exist: use patched-6.1 or patched-7.2");
    return series;
}

std::optional<std::string> unpatched_series(std::string_view spec) {
    if (!spec.starts_with("unpatched-")) return std::nullopt;
    const std::string as_patched = "patched-" + std::string(spec.substr(10));
    try {
        return patched_series(as_patched);
    } catch (const UsageError&) {
        throw UsageError("unknown kernel '" + std::string(spec) +
                         "': unpatched-<series> takes a series of kernel-patches/ such as unpatched-7.2");
    }
}

const std::vector<KernelSuite>& kernel_suites() {
    static const std::vector<KernelSuite> suites = {
        {"5.10", "bullseye"}, {"6.1", "bookworm"}, {"6.12", "trixie"}, {"7.2", "sid"}};
    return suites;
}

namespace {
const char* const kKernelChoices =
    "5.10 (bullseye), 6.1 or default (bookworm), 6.12 (trixie), 7.2 or latest (sid), patched or patched-6.1 "
    "(6.1 with memhp's kernel-patches/), patched-7.2 (7.2 with them), unpatched-6.1 or unpatched-7.2 (the same "
    "source and lab config without the patches), a Debian package name such as linux-image-6.1.0-57-amd64, or the path "
    "of a "
    "bzImage";
}  // namespace

KernelRequest classify_kernel_spec(std::string_view spec_view) {
    std::string spec(spec_view);
    if (spec.empty()) throw UsageError(std::string("--kernel is empty: use ") + kKernelChoices);
    if (spec == "default") spec = "6.1";
    if (spec == "latest") spec = "7.2";
    for (const auto& s : kernel_suites())
        if (spec == s.series) return {KernelRequest::Kind::MetaPackage, "linux-image-amd64", s.suite};
    if (auto s = patched_series(spec)) return {KernelRequest::Kind::Patched, *s, ""};
    if (auto s = unpatched_series(spec)) return {KernelRequest::Kind::Patched, *s, "", true};
    static const std::regex pkg(R"(^linux-image-[a-z0-9.+~-]+$)");
    if (std::regex_match(spec, pkg)) return {KernelRequest::Kind::Package, spec, ""};
    if (spec.find('/') != std::string::npos || fs::exists(spec)) return {KernelRequest::Kind::File, spec, ""};
    static const std::regex series(R"(^(\d+)\.(\d+)$)");
    if (std::regex_match(spec, series))
        throw UsageError("no Debian suite memhp knows has kernel " + spec + ": use " + kKernelChoices);
    throw UsageError("unknown kernel '" + spec + "': use " + kKernelChoices);
}

std::optional<PackageStanza> parse_package_stanza(std::string_view text) {
    std::istringstream in{std::string(text)};
    PackageStanza st;
    std::string line, depends;
    bool in_depends = false;
    while (std::getline(in, line)) {
        if (line.empty()) {
            if (!st.package.empty()) break;  // the end of the first stanza
            continue;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            if (in_depends) depends += " " + line;
            continue;
        }
        in_depends = false;
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string key = line.substr(0, colon);
        std::string value = trim(line.substr(colon + 1));
        if (key == "Package")
            st.package = value;
        else if (key == "Version")
            st.version = value;
        else if (key == "Depends") {
            depends = value;
            in_depends = true;
        }
    }
    if (st.package.empty()) return std::nullopt;
    std::istringstream deps(depends);
    for (std::string item; std::getline(deps, item, ',');) {
        std::string first = trim(item.substr(0, item.find('|')));
        first = first.substr(0, first.find_first_of(" (:"));
        if (!first.empty()) st.depends.push_back(first);
    }
    return st;
}

std::optional<std::string> image_of_meta(const PackageStanza& meta) {
    static const std::regex image(R"(^linux-image-\d[a-z0-9.+~-]*$)");
    for (const auto& d : meta.depends)
        if (std::regex_match(d, image)) return d;
    return std::nullopt;
}

std::vector<std::string> kernel_parts(const PackageStanza& image) {
    std::vector<std::string> parts{image.package};
    static const std::regex part(R"(^linux-(binary|modules|base)-\d[a-z0-9.+~-]*$)");
    for (const auto& d : image.depends)
        if (std::regex_match(d, part)) parts.push_back(d);
    return parts;
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

std::string normalize_kernel_tree(const fs::path& root) {
    std::optional<std::string> release = release_from_boot_dir(root / "boot");
    const fs::path usr_modules = root / "usr" / "lib" / "modules";
    std::error_code ec;
    if (!release)
        for (const auto& ent : fs::directory_iterator(usr_modules, ec))
            if (fs::is_regular_file(ent.path() / "vmlinuz")) release = ent.path().filename().string();
    if (!release || release->empty() || release->find('/') != std::string::npos)
        throw Error(
            "the unpacked packages in " + root.string() +
            " hold no kernel (no boot/vmlinuz-* and no usr/lib/modules/*/vmlinuz): not a kernel image package?");
    const fs::path usr_dir = usr_modules / *release;
    auto link = [&](const fs::path& target, const fs::path& at) {
        if (fs::exists(at) || fs::is_symlink(at)) return;
        fs::create_directories(at.parent_path());
        if (fs::exists(at.parent_path() / target)) fs::create_symlink(target, at);
    };
    if (fs::is_directory(usr_dir)) {
        const fs::path rel_usr = fs::path("..") / "usr" / "lib" / "modules" / *release;
        link(rel_usr / "vmlinuz", root / "boot" / ("vmlinuz-" + *release));
        link(rel_usr / "config", root / "boot" / ("config-" + *release));
        link(fs::path("..") / ".." / "usr" / "lib" / "modules" / *release, root / "lib" / "modules" / *release);
    }
    return *release;
}

std::string debian_mirror_from_sources(std::string_view text, bool security) {
    std::istringstream in{std::string(text)};
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string first, uri;
        words >> first;
        if (first == "URIs:")
            words >> uri;
        else if (first == "deb") {
            words >> uri;
            if (uri.starts_with("[")) {  // options: "[signed-by=... arch=amd64]"
                while (uri.find(']') == std::string::npos && words >> uri) {}
                words >> uri;
            }
        }
        if (uri.empty() || (uri.find("security") != std::string::npos) != security) continue;
        static const std::regex ok(R"(^https?://[A-Za-z0-9.:_/~-]+$)");
        if (!std::regex_match(uri, ok)) continue;
        while (uri.size() > 1 && uri.back() == '/') uri.pop_back();
        return uri;
    }
    return security ? "http://deb.debian.org/debian-security" : "http://deb.debian.org/debian";
}

namespace {
std::string system_sources() {
    std::string all;
    std::error_code ec;
    for (const auto& ent : fs::directory_iterator("/etc/apt/sources.list.d", ec))
        if (ent.path().extension() == ".sources" || ent.path().extension() == ".list")
            all += try_read_file(ent.path()).value_or("") + "\n";
    all += try_read_file("/etc/apt/sources.list").value_or("");
    return all;
}
}  // namespace

std::string debian_mirror() {
    if (const char* m = std::getenv("MEMHP_DEBIAN_MIRROR"); m && *m) return m;
    return debian_mirror_from_sources(system_sources(), false);
}

std::string apt_sources_list(const std::string& mirror, const std::string& security, const std::string& suite) {
    const std::string opts = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ";
    std::string out = opts + mirror + " " + suite + " main\n";
    // Kernel fixes of a stable suite go to <suite>-security first; sid has none.
    if (suite != "sid" && !security.empty()) out += opts + security + " " + suite + "-security main\n";
    return out;
}

std::vector<std::string> apt_options(const fs::path& dir) {
    // An empty dpkg status: the host's installed packages must not become
    // candidates (an installed 6.1 linux-image-amd64 would outrank bullseye's).
    return {"-o", "APT::Sandbox::User=root",  // _apt cannot enter root's home; say so instead of warning
            "-o", "Dir::Etc::SourceList=" + (dir / "sources.list").string(),
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "Dir::Etc::Preferences=/dev/null",
            "-o", "Dir::Etc::PreferencesParts=/dev/null",
            "-o", "Dir::State::Lists=" + (dir / "lists").string(),
            "-o", "Dir::State::status=" + (dir / "status").string(),
            "-o", "Dir::Cache=" + (dir / "cache").string()};
}

std::optional<bool> kernel_config_has(const KernelImage& k, std::string_view option) {
    if (k.config.empty()) return std::nullopt;
    auto text = try_read_file(k.config);
    if (!text) return std::nullopt;
    const std::string y = "CONFIG_" + std::string(option) + "=y", m = "CONFIG_" + std::string(option) + "=m";
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);)
        if (line == y || line == m) return true;
    return false;
}

KernelCache::KernelCache(fs::path root, Progress progress) : root_(std::move(root)), progress_(std::move(progress)) {
    fs::create_directories(root_);
}

fs::path KernelCache::entry_dir(const std::string& package) const { return root_ / package; }
fs::path KernelCache::apt_dir(const std::string& suite) const { return root_ / "apt" / suite; }

namespace {
constexpr auto kAptCacheTimeout = std::chrono::seconds(90);

bool has_package_lists(const fs::path& lists) {
    std::error_code ec;
    for (const auto& ent : fs::directory_iterator(lists, ec))
        if (ent.path().filename().string().find("_Packages") != std::string::npos) return true;
    return false;
}
}  // namespace

bool KernelCache::update_lists(const std::string& suite, bool force, std::string* why) {
    const fs::path dir = apt_dir(suite);
    fs::create_directories(dir / "lists" / "partial");
    fs::create_directories(dir / "cache" / "archives" / "partial");
    if (!fs::exists(dir / "status")) write_file(dir / "status", "");
    const std::string mirror = debian_mirror();
    const char* sec_env = std::getenv("MEMHP_DEBIAN_SECURITY_MIRROR");
    const std::string security = sec_env ? std::string(sec_env) : debian_mirror_from_sources(system_sources(), true);
    const std::string line = apt_sources_list(mirror, security, suite);
    if (try_read_file(dir / "sources.list").value_or("") != line) {
        write_file_atomic(dir / "sources.list", line);
        force = true;
    }
    // The stamp, not the lists' mtimes (apt sets those to the mirror's Last-Modified), dates the last update.
    const fs::path stamp = dir / "updated";
    std::error_code ec;
    if (!force && has_package_lists(dir / "lists") && fs::exists(stamp) &&
        fs::file_time_type::clock::now() - fs::last_write_time(stamp, ec) < std::chrono::hours(24))
        return true;
    if (progress_)
        progress_("fetching the package lists of Debian " + suite + " from " + mirror + " (into " + dir.string() + ")");
    std::vector<std::string> argv{"apt-get", "-q"};
    auto opts = apt_options(dir);
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.push_back("update");
    RunResult r;
    try {
        r = run(argv, {.timeout = std::chrono::minutes(5)});
    } catch (const Interrupted&) {
        throw;
    } catch (const Error& e) {
        if (why) *why = e.what();
        return false;
    }
    // apt-get update reports an unreachable mirror with W:/E: lines and may still exit 0.
    const std::string out = r.out + r.err;
    bool failed = !r.ok() || out.find("Failed to fetch") != std::string::npos ||
                  out.find("Temporary failure resolving") != std::string::npos || !has_package_lists(dir / "lists");
    if (failed && why) *why = last_lines(r.err.empty() ? r.out : r.err, 3);
    if (!failed) write_file(stamp, "");
    return !failed;
}

std::optional<PackageStanza> KernelCache::show(const std::string& suite, const std::string& package) {
    std::vector<std::string> argv{"apt-cache"};
    auto opts = apt_options(apt_dir(suite));
    argv.insert(argv.end(), opts.begin(), opts.end());
    argv.insert(argv.end(), {"show", "--no-all-versions", package});
    RunResult r;
    try {
        r = run(argv, {.timeout = kAptCacheTimeout});
    } catch (const Interrupted&) {
        throw;
    } catch (const Error& e) {
        throw Error("apt-cache show " + package + " (Debian " + suite + ") failed: " + e.what() +
                    ". The machine may be overloaded or another apt may hold " + apt_dir(suite).string() +
                    ": try again, or remove that directory to start its lists afresh");
    }
    if (!r.ok()) return std::nullopt;
    return parse_package_stanza(r.out);
}

std::string KernelCache::resolve_meta(const std::string& suite, const std::string& meta) {
    const fs::path memo = root_ / ("resolved-" + suite);
    std::string why;
    if (update_lists(suite, false, &why)) {
        if (auto st = show(suite, meta))
            if (auto image = image_of_meta(*st)) {
                write_file_atomic(memo, *image);
                return *image;
            }
        why = meta + " of " + suite + " names no linux-image package";
    }
    // Offline: take what was resolved last time, if it is still in the cache.
    if (auto cached = try_read_file(memo); cached && !trim(*cached).empty()) {
        if (progress_)
            progress_("note: cannot reach Debian " + suite + " (" + why + "); using the cached " + trim(*cached));
        return trim(*cached);
    }
    throw Error("cannot resolve the kernel of Debian " + suite + ": " + why + "\nCheck the network and the mirror " +
                debian_mirror() +
                " (set MEMHP_DEBIAN_MIRROR to use another), or pass a cached kernel: " + current_kernels_hint());
}

// The suite whose lists have `package`; its name's +debNN suffix is tried first.
std::string KernelCache::find_suite(const std::string& package) {
    std::vector<std::string> order;
    static const std::vector<std::pair<std::string, std::string>> hints = {{"+deb14", "sid"},
                                                                           {"+deb13", "trixie"},
                                                                           {"+deb12", "bookworm"},
                                                                           {"linux-image-6.1.0-", "bookworm"},
                                                                           {"linux-image-5.10.", "bullseye"}};
    for (const auto& [needle, suite] : hints)
        if (package.find(needle) != std::string::npos) order.push_back(suite);
    for (auto it = kernel_suites().rbegin(); it != kernel_suites().rend(); ++it)
        if (std::find(order.begin(), order.end(), it->suite) == order.end()) order.push_back(it->suite);
    std::string unreachable;
    for (const auto& suite : order) {
        std::string why;
        if (!update_lists(suite, false, &why)) {
            unreachable += (unreachable.empty() ? "" : ", ") + suite;
            continue;
        }
        if (show(suite, package)) return suite;
    }
    if (!unreachable.empty())
        throw Error("cannot look for " + package + ": the package lists of Debian " + unreachable +
                    " could not be fetched from " + debian_mirror() +
                    " (network down?). Check the network, or set "
                    "MEMHP_DEBIAN_MIRROR");
    throw Error(package + " is in none of Debian bullseye, bookworm, trixie and sid. Their current kernels: " +
                current_kernels_hint() + "\nUse --kernel 5.10, 6.1, 6.12 or 7.2 to take a suite's current one.");
}

// "5.10 = linux-image-5.10.0-32-amd64 (bullseye), ..." from the lists at hand.
std::string KernelCache::current_kernels_hint() {
    std::string out;
    for (const auto& s : kernel_suites()) {
        std::optional<std::string> image;
        if (has_package_lists(apt_dir(s.suite) / "lists")) {
            try {
                if (auto st = show(s.suite, "linux-image-amd64")) image = image_of_meta(*st);
            } catch (const Error&) {}
        }
        if (!image) image = try_read_file(root_ / ("resolved-" + s.suite));
        if (image && !trim(*image).empty())
            out += (out.empty() ? "" : ", ") + s.series + " = " + trim(*image) + " (" + s.suite + ")";
    }
    return out.empty() ? "none known (no package lists fetched yet)" : out;
}

void KernelCache::fetch(const std::string& suite, const std::string& package) {
    const fs::path final_dir = entry_dir(package);
    const fs::path tmp = root_ / (package + ".partial." + std::to_string(::getpid()));
    std::error_code ec;
    // Leftovers of an interrupted fetch (we hold the lock: nobody else is fetching).
    for (const auto& ent : fs::directory_iterator(root_, ec))
        if (ent.path().filename().string().starts_with(package + ".partial")) fs::remove_all(ent.path(), ec);
    auto image = show(suite, package);
    if (!image) throw Error(package + " is not in the package lists of Debian " + suite);
    const auto parts = kernel_parts(*image);
    fs::create_directories(tmp / "root");
    // Let the _apt sandbox user write the .debs (avoids apt's unsandboxed warning).
    fs::permissions(tmp, fs::perms::all, ec);
    std::string names;
    for (const auto& p : parts) names += (names.empty() ? "" : " ") + p;
    if (progress_) progress_("fetching " + names + " from Debian " + suite + " (into " + root_.string() + ")");
    auto download = [&] {
        std::vector<std::string> argv{"apt-get", "-q"};
        auto opts = apt_options(apt_dir(suite));
        argv.insert(argv.end(), opts.begin(), opts.end());
        argv.push_back("download");
        argv.insert(argv.end(), parts.begin(), parts.end());
        return run(argv, {.timeout = std::chrono::minutes(15), .cwd = tmp});
    };
    auto r = download();
    if (!r.ok()) {
        // Lists a day old may name a version the mirror has dropped: refresh once.
        std::string why;
        if (update_lists(suite, true, &why)) r = download();
    }
    if (!r.ok()) {
        std::string why = last_lines(r.err.empty() ? r.out : r.err, 3);
        fs::remove_all(tmp, ec);
        throw Error("cannot fetch " + names + " from Debian " + suite + ": " + why +
                    "\nCheck the network and the mirror " + debian_mirror() + " (MEMHP_DEBIAN_MIRROR overrides it)");
    }
    std::vector<fs::path> debs;
    for (const auto& ent : fs::directory_iterator(tmp))
        if (ent.path().extension() == ".deb") debs.push_back(ent.path());
    if (debs.size() != parts.size())
        throw Error("apt-get download " + names + " produced " + std::to_string(debs.size()) + " .deb files in " +
                    tmp.string() + ", expected " + std::to_string(parts.size()));
    for (const auto& deb : debs) {
        if (progress_) progress_("unpacking " + deb.filename().string());
        run_checked({"dpkg-deb", "-x", deb.string(), (tmp / "root").string()}, {.timeout = std::chrono::minutes(5)});
        fs::remove(deb);
    }
    const std::string release = normalize_kernel_tree(tmp / "root");
    if (fs::exists(tmp / "root" / "lib" / "modules" / release)) {
        auto depmod = find_program("depmod");
        if (!depmod) throw Error("depmod is not installed (Debian package kmod): run scripts/install-deps.sh");
        run_checked({depmod->string(), "-b", (tmp / "root").string(), release});
    }
    write_file(tmp / "root" / "memhp-kernel.txt",
               package + "\n" + image->version + "\n" + release + "\n" + suite + "\n");
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
    std::getline(in, k.suite);  // absent in entries of older memhp versions
    k.vmlinuz = dir / "boot" / ("vmlinuz-" + k.release);
    k.config = dir / "boot" / ("config-" + k.release);
    if (fs::exists(dir / "lib" / "modules" / k.release / "modules.dep"))
        k.modules_dir = dir / "lib" / "modules" / k.release;
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
KernelImage KernelCache::ensure_patched(const std::string& spec, const std::string& series, bool unpatched) {
    const fs::path script = patched_kernel_script();
    if (!fs::exists(script))
        throw Error(script.string() + " is missing: --kernel " + spec +
                    " needs memhp's source tree (or set MEMHP_KERNEL_PATCHES to its kernel-patches folder)");
    std::vector<std::string> args = {"bash", script.string(), "--series", series};
    if (unpatched) args.push_back("--unpatched");
    const std::string what = std::string(unpatched ? "unpatched" : "patched") + " " + series;
    auto print_dir = args;
    print_dir.push_back("--print-dir");
    auto where = run(print_dir, {.timeout = std::chrono::minutes(1)});
    const fs::path entry = trim(where.out);
    if (entry.empty() || (where.exit_code != 0 && where.exit_code != 3))
        throw Error(script.string() + " --print-dir failed: " + last_lines(where.err, 3));
    if (where.exit_code == 3) {
        if (progress_)
            progress_("building the " + what + " kernel (kernel-patches/" + series +
                      "/, about 10 min on 2 idle cores, minutes when its object tree is there; once per version of "
                      "the patches)");
        TempDir tmp("memhp-kbuild");
        const fs::path log = tmp.path() / "build.out";
        auto child = ChildProcess::spawn(args, log);
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
            throw Error("building the " + what + " kernel failed (" + script.string() + " --series " + series +
                        (unpatched ? " --unpatched" : "") + "):\n" + last_lines(try_read_file(log).value_or(""), 12));
    }
    auto meta = try_read_file(entry / "memhp-kernel.txt");
    if (!meta || !fs::exists(entry / "bzImage"))
        throw Error("the " + what + " kernel's cache entry " + entry.string() + " is incomplete: run " +
                    script.string() + " --series " + series + (unpatched ? " --unpatched" : "") + " --force");
    KernelImage k = patched_kernel_entry(entry, *meta);
    k.spec = spec;
    return k;
}

KernelImage KernelCache::ensure(std::string_view spec_view) {
    const std::string spec(spec_view);
    auto req = classify_kernel_spec(spec);
    if (req.kind == KernelRequest::Kind::Patched) return ensure_patched(spec, req.name, req.unpatched);
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
    // One process at a time resolves and fetches: concurrent tests share the cache.
    FileLock lock(root_ / ".lock");
    std::string package = req.name, suite = req.suite;
    if (req.kind == KernelRequest::Kind::MetaPackage) package = resolve_meta(suite, req.name);
    KernelImage k = load_entry(spec, package);
    if (k.vmlinuz.empty()) {
        if (suite.empty()) suite = find_suite(package);
        fetch(suite, package);
        k = load_entry(spec, package);
        if (k.vmlinuz.empty()) throw Error("kernel cache entry for " + package + " is incomplete after fetching");
    }
    return k;
}

}  // namespace memhp::lab
