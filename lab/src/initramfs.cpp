// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/initramfs.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "guest_init.hpp"  // embedded guest/init.sh
#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace memhp::lab {

std::string module_name(std::string_view path) {
    auto slash = path.rfind('/');
    std::string base(slash == std::string_view::npos ? path : path.substr(slash + 1));
    auto ko = base.find(".ko");
    if (ko != std::string::npos) base.erase(ko);
    for (auto& c : base)
        if (c == '-') c = '_';
    return base;
}

std::vector<std::string> resolve_module_load_order(std::string_view modules_dep, std::string_view modules_builtin,
                                                   const std::vector<std::string>& wanted) {
    std::map<std::string, std::string> path_of;               // name -> path
    std::map<std::string, std::vector<std::string>> deps_of;  // name -> dep names
    std::istringstream dep_in{std::string(modules_dep)};
    std::string line;
    while (std::getline(dep_in, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string path = line.substr(0, colon);
        std::string name = module_name(path);
        path_of[name] = path;
        std::istringstream rest(line.substr(colon + 1));
        std::string d;
        auto& deps = deps_of[name];
        while (rest >> d) deps.push_back(module_name(d));
    }
    std::set<std::string> builtin;
    std::istringstream b_in{std::string(modules_builtin)};
    while (std::getline(b_in, line))
        if (!trim(line).empty()) builtin.insert(module_name(trim(line)));

    std::vector<std::string> order;
    std::set<std::string> done, visiting;
    std::function<void(const std::string&)> visit = [&](const std::string& name) {
        if (done.count(name)) return;
        if (!path_of.count(name)) {
            if (builtin.count(name)) {
                done.insert(name);
                return;
            }
            throw Error("the guest kernel has no module '" + name +
                        "' and does not have it built in; it needs virtio, virtio-serial (VIRTIO_CONSOLE), "
                        "9p (NET_9P_VIRTIO, 9P_FS) and OVERLAY_FS");
        }
        if (visiting.count(name)) throw Error("module dependency cycle at '" + name + "'");
        visiting.insert(name);
        for (const auto& d : deps_of[name]) visit(d);
        visiting.erase(name);
        done.insert(name);
        order.push_back(path_of[name]);
    };
    for (const auto& w : wanted) visit(module_name(w));
    return order;
}

namespace {

// Copies a module into dst, decompressing .xz / .zst / .gz (busybox insmod wants plain .ko).
void install_module(const fs::path& src, const fs::path& dst) {
    const auto ext = src.extension().string();
    if (ext == ".ko") {
        fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
        return;
    }
    std::vector<std::string> argv;
    if (ext == ".xz")
        argv = {"xz", "-dc", src.string()};
    else if (ext == ".zst")
        argv = {"zstd", "-dc", src.string()};
    else if (ext == ".gz")
        argv = {"gzip", "-dc", src.string()};
    else
        throw Error("unknown module compression: " + src.string());
    write_file(dst, run_checked(argv));
}

}  // namespace

fs::path ensure_initramfs(const KernelImage& kernel, const fs::path& cache_root, const fs::path& busybox) {
    if (!fs::exists(busybox))
        throw Error(busybox.string() + " is missing: install busybox-static (scripts/install-deps.sh does)");
    std::vector<std::string> modules;
    std::vector<std::string> net_modules;  // not already in `modules`
    if (!kernel.modules_dir.empty()) {
        const auto dep = read_file(kernel.modules_dir / "modules.dep");
        const auto builtin = try_read_file(kernel.modules_dir / "modules.builtin").value_or("");
        modules = resolve_module_load_order(dep, builtin, kGuestModules);
        for (const auto& m : resolve_module_load_order(dep, builtin, kGuestNetModules))
            if (std::find(modules.begin(), modules.end(), m) == modules.end()) net_modules.push_back(m);
    }
    std::string key_material = std::string(embedded::guest_init) + "\n" + kernel.release + "\n" +
                               kernel.vmlinuz.string() + "\n" + std::to_string(fs::file_size(busybox));
    for (const auto& m : modules) key_material += m + "\n";
    for (const auto& m : net_modules) key_material += "net " + m + "\n";
    const fs::path dir = cache_root / "initramfs";
    fs::create_directories(dir);
    const fs::path out = dir / ("initramfs-" + kernel.release + "-" + hex64(fnv1a(key_material)) + ".cpio");
    if (fs::exists(out)) return out;

    FileLock lock(dir / ".lock");
    if (fs::exists(out)) return out;
    TempDir tmp("memhp-initramfs");
    const fs::path root = tmp.path() / "root";
    for (const char* d : {"bin", "dev", "proc", "sys", "lib/modules", "host", "lower", "rw", "tmp"})
        fs::create_directories(root / d);
    fs::copy_file(busybox, root / "bin" / "busybox");
    write_file(root / "init", embedded::guest_init);
    fs::permissions(root / "init", fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                       fs::perms::others_read | fs::perms::others_exec);
    auto install_list = [&](const std::vector<std::string>& mods, const char* list_name) {
        std::string list;
        for (const auto& m : mods) {
            std::string base = fs::path(m).filename().string();
            base = base.substr(0, base.find(".ko")) + ".ko";
            install_module(kernel.modules_dir / m, root / "lib" / "modules" / base);
            list += base + "\n";
        }
        write_file(root / list_name, list);
    };
    install_list(modules, "modules.list");
    install_list(net_modules, "modules.net.list");

    std::string files;
    for (const auto& ent : fs::recursive_directory_iterator(root))
        files += fs::relative(ent.path(), root).string() + "\n";
    auto archive = run_checked({"cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"},
                               {.timeout = std::chrono::minutes(2), .cwd = root, .stdin_data = files});
    write_file_atomic(out, archive);
    return out;
}

}  // namespace memhp::lab
