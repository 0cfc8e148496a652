// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/dax.hpp"

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "memhp/files.hpp"
#include "memhp/process.hpp"
#include "memhp/size.hpp"

namespace memhp::lab {

namespace {
using Clock = std::chrono::steady_clock;
constexpr std::uint64_t kGiB = std::uint64_t{1} << 30;
constexpr std::uint64_t kBlock = std::uint64_t{128} << 20;  // x86's memory block
const std::string kDaxDevices = "/sys/bus/dax/devices/";
const std::string kDaxDrivers = "/sys/bus/dax/drivers/";
const std::string kNdDevices = "/sys/bus/nd/devices/";
const std::string kMem = "/sys/devices/system/memory/memory";

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// "kernel/drivers/nvdimm/nd_pmem.ko.xz" -> "nd_pmem" (dashes as underscores, as /sys/module names them).
std::string module_name_of(std::string_view path) {
    auto slash = path.rfind('/');
    std::string base(slash == std::string_view::npos ? path : path.substr(slash + 1));
    if (auto ko = base.find(".ko"); ko != std::string::npos) base.resize(ko);
    std::replace(base.begin(), base.end(), '-', '_');
    return base;
}

std::uint64_t parse_number(const std::string& text, int base, const std::string& what) {
    const std::string t = trim(text);
    std::size_t end = 0;
    std::uint64_t v = 0;
    try {
        v = std::stoull(t, &end, base);
    } catch (const std::exception&) {
        end = 0;
    }
    if (t.empty() || end != t.size())
        throw Error("the guest's " + what + " reads '" + t.substr(0, 40) + "', not a number");
    return v;
}
}  // namespace

DaxLayout dax_layout(std::uint64_t dax_bytes) {
    if (dax_bytes == 0 || dax_bytes % kBlock || dax_bytes > 64 * kGiB)
        throw UsageError(
            "--dax: the size must be a positive multiple of 128M (the guest's memory block) up to 64G, not " +
            format_size_exact(dax_bytes));
    DaxLayout l;
    l.dax_bytes = dax_bytes;
    // One block more than kmem gets: the devdax namespace starts with its
    // info block and (ndctl's default --map=dev) the memmap of its own
    // ZONE_DEVICE pages, 16 MiB per GiB; kmem then aligns the rest to whole
    // memory blocks, so the first block is lost to it.
    l.pmem_bytes = dax_bytes + kBlock;
    // The NUMA placement is chosen so that the dax memory is node 1's and
    // node 1 has no other memory: node 0 holds all the RAM the guest boots
    // with, node 1 only the pmem range. Then kmem's memmap from the page
    // allocator has to come from node 0 (remote, as on a real CXL or pmem
    // node that has no DRAM of its own), while memmap_on_memory puts it on
    // node 1 itself: the memmap-node vs served-node comparison tells the two
    // apart. The pmem range always lies above 4 GiB: q35 keeps 2 GiB below
    // 4 GiB once the guest has 2.75 GiB or more and puts the rest at 4 GiB.
    // A range inside low memory (at 2 GiB, with a smaller guest) comes up
    // as a namespace ndctl cannot reconfigure ("'--size=' must be >= 16MiB
    // for 'devdax' mode", seen for 128M on 5.10 to 7.2), so node 0 grows
    // until the guest is 2.75 GiB: its first 2 GiB low, the rest at 4 GiB,
    // then node 1. The initramfs, which QEMU loads just below 2 GiB, stays
    // in node 0, outside the range memmap= takes away (KASLR avoids
    // memmap= ranges).
    constexpr std::uint64_t kLowMax = 2 * kGiB;
    constexpr std::uint64_t kQ35Split = 0xb0000000ULL;  // 2.75 GiB
    std::uint64_t node0 = kLowMax;
    if (node0 + l.pmem_bytes < kQ35Split) node0 = (kQ35Split - l.pmem_bytes + kBlock - 1) / kBlock * kBlock;
    l.pmem_start = 4 * kGiB + (node0 - kLowMax);
    l.node_mem = {node0, l.pmem_bytes};
    l.memmap_arg = "memmap=" + format_size_exact(l.pmem_bytes) + "!" + format_size_exact(l.pmem_start);
    return l;
}

void configure_dax_guest(GuestConfig& cfg, std::uint64_t dax_bytes) {
    const auto l = dax_layout(dax_bytes);
    cfg.node_mem = l.node_mem;
    cfg.append.push_back(l.memmap_arg);
}

const std::vector<std::string>& dax_modules() {
    static const std::vector<std::string> m = {"nd_e820", "nd_pmem", "dax_pmem", "device_dax", "kmem"};
    return m;
}

std::vector<std::string> module_load_order(std::string_view modules_dep, const std::vector<std::string>& names) {
    // "path: dep dep ..." per line; a module's own dependencies are listed
    // in full (transitively), so loading them first, each before the
    // modules that need it, is a depth-first walk.
    std::map<std::string, std::pair<std::string, std::vector<std::string>>> by_name;  // name -> (path, deps)
    std::istringstream in{std::string(modules_dep)};
    std::string line;
    while (std::getline(in, line)) {
        const auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0) continue;
        std::string path = line.substr(0, colon);
        std::istringstream deps(line.substr(colon + 1));
        std::vector<std::string> d;
        for (std::string dep; deps >> dep;) d.push_back(dep);
        by_name.emplace(module_name_of(path), std::make_pair(path, d));
    }
    std::vector<std::string> order;
    std::set<std::string> done;
    std::function<void(const std::string&, int)> visit = [&](const std::string& name, int depth) {
        if (done.count(name)) return;
        const auto it = by_name.find(name);
        if (it == by_name.end())
            throw Error("the guest kernel has no module " + name + " (not in its modules.dep): it needs " + name +
                        " for dax/kmem");
        if (depth > 64) throw Error("modules.dep: dependency loop at " + name);
        // modules.dep lists the deepest dependency last: load from the end.
        const auto& deps = it->second.second;
        for (auto d = deps.rbegin(); d != deps.rend(); ++d) visit(module_name_of(*d), depth + 1);
        done.insert(name);
        order.push_back(it->second.first);
    };
    for (const auto& n : names) visit(n, 0);
    return order;
}

bool valid_nd_name(std::string_view name, std::string_view prefix) {
    if (!name.starts_with(prefix) || name.size() > prefix.size() + 21) return false;
    const auto rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == rest.size()) return false;
    for (std::size_t i = 0; i < rest.size(); ++i)
        if (i != dot && !std::isdigit(static_cast<unsigned char>(rest[i]))) return false;
    return true;
}

NdctlNamespace parse_ndctl_namespace(std::string_view text) {
    constexpr std::size_t kMax = 64 * 1024;
    if (text.size() > kMax)
        throw Error("ndctl printed " + std::to_string(text.size()) + " bytes, more than the " + std::to_string(kMax) +
                    " a namespace's description takes: refusing it");
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error("ndctl create-namespace did not print a JSON object");
    auto str = [&](const nlohmann::json& o, const char* key) -> std::string {
        const auto it = o.find(key);
        if (it == o.end() || !it->is_string()) throw Error(std::string("ndctl's JSON has no string '") + key + "'");
        return it->get<std::string>();
    };
    NdctlNamespace ns;
    ns.dev = str(j, "dev");
    ns.mode = str(j, "mode");
    if (!valid_nd_name(ns.dev, "namespace"))
        throw Error("ndctl named the namespace '" + ns.dev.substr(0, 40) + "', not namespaceN.M");
    if (ns.mode != "devdax")
        throw Error("ndctl made namespace " + ns.dev + " '" + ns.mode.substr(0, 20) + "', not devdax");
    const auto region = j.find("daxregion");
    if (region == j.end() || !region->is_object()) throw Error("ndctl's JSON has no 'daxregion' object");
    const auto devices = region->find("devices");
    if (devices == region->end() || !devices->is_array() || devices->size() != 1)
        throw Error("ndctl's daxregion does not list exactly one dax device");
    if (!(*devices)[0].is_object()) throw Error("ndctl's dax device is not a JSON object");
    ns.chardev = str((*devices)[0], "chardev");
    if (!valid_nd_name(ns.chardev, "dax"))
        throw Error("ndctl named the dax device '" + ns.chardev.substr(0, 40) + "', not daxN.M");
    return ns;
}

std::vector<int> kmem_blocks(std::uint64_t start, std::uint64_t size, std::uint64_t block_size) {
    std::vector<int> b;
    if (!block_size || size == 0 || start + size < start) return b;
    const std::uint64_t first = (start + block_size - 1) / block_size;
    const std::uint64_t end = (start + size) / block_size;
    for (std::uint64_t i = first; i < end; ++i) b.push_back(static_cast<int>(i));
    return b;
}

DaxLab::DaxLab(Machine& guest, Ms timeout) : guest_(guest), timeout_(timeout) {
    auto& agent = guest_.agent();
    block_size_ = parse_number(agent.read("/sys/devices/system/memory/block_size_bytes"), 16, "memory block size");
    if (!find_program("ndctl"))
        throw Error(
            "--dax needs ndctl on the host (the guest runs it from the host's /usr): install it "
            "(scripts/install-deps.sh installs ndctl)");

    // The modules, from the guest kernel's own modules in the cache.
    const auto& mods = guest_.kernel().modules_dir;
    if (mods.empty())
        throw GuestError("--dax: kernel " + guest_.kernel().vmlinuz.string() +
                         " comes without modules, and dax/kmem needs nd_e820, nd_pmem, dax_pmem, device_dax and kmem");
    const auto dep = read_file(mods / "modules.dep");
    std::set<std::string> loaded;
    for (const auto& m : agent.listdir("/sys/module")) loaded.insert(m);
    for (const auto& rel : module_load_order(dep, dax_modules())) {
        if (loaded.count(module_name_of(rel))) continue;
        const auto r = agent.exec({"/sbin/insmod", (mods / rel).string()});
        if (!r.ok())
            throw GuestError("insmod " + (mods / rel).string() + " failed in the guest: " + trim(r.err + r.out));
    }

    // The e820 pmem region memmap= made (nd_e820 registers it asynchronously).
    const auto deadline = Clock::now() + timeout_;
    std::string region;
    while (region.empty()) {
        try {
            for (const auto& e : agent.listdir(kNdDevices))
                if (e.starts_with("region") && agent.try_read(kNdDevices + e + "/resource")) region = e;
        } catch (const AgentError&) {
            // the nd bus is not registered yet
        }
        if (!region.empty()) break;
        if (Clock::now() >= deadline)
            throw GuestError(
                "--dax: no pmem region appeared in the guest (/sys/bus/nd/devices): was the guest booted "
                "with memmap=SIZE!START (configure_dax_guest)?\n--- last console lines ---\n" +
                guest_.console_tail(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        guest_.check_alive();
    }
    const std::string id = region.substr(6);
    std::string ns = "namespace" + id + ".0";
    while (!agent.try_read(kNdDevices + ns + "/mode")) {
        if (Clock::now() >= deadline) throw GuestError("--dax: region " + region + " has no " + ns);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        guest_.check_alive();
    }

    const auto r = agent.exec({"ndctl", "create-namespace", "-f", "-e", ns, "-m", "devdax"}, timeout_);
    if (!r.ok())
        throw GuestError("ndctl create-namespace -f -e " + ns + " -m devdax failed in the guest (exit " +
                         std::to_string(r.exit_code) + "): " + trim(r.err + r.out).substr(0, 2000));
    const auto made = parse_ndctl_namespace(r.out);
    ndctl_json_ = r.out;
    ns_ = made.dev;
    dev_ = made.chardev;
    const std::string d = kDaxDevices + dev_;
    start_ = parse_number(agent.read(d + "/resource"), 16, dev_ + " resource");
    size_ = parse_number(agent.read(d + "/size"), 10, dev_ + " size");
    if (auto t = agent.try_read(d + "/target_node")) target_node_ = static_cast<int>(std::stol(trim(*t)));
    if (blocks().empty())
        throw GuestError("--dax: " + dev_ + " (" + format_size_exact(size_) + " at " + std::to_string(start_) +
                         ") holds no whole memory block for kmem");
}

bool DaxLab::has_memmap_on_memory_attr() {
    return guest_.agent().try_read(kDaxDevices + dev_ + "/memmap_on_memory").has_value();
}

std::vector<int> DaxLab::blocks() const { return kmem_blocks(start_, size_, block_size_); }

KmemAdd DaxLab::add(std::optional<bool> memmap_on_memory, Zone zone) {
    auto& agent = guest_.agent();
    KmemAdd a;
    a.blocks = blocks();
    if (memmap_on_memory) {
        if (!has_memmap_on_memory_attr())
            throw UsageError("dax memmap_on_memory asked, but kernel " + guest_.release() + " has no " + kDaxDevices +
                             dev_ +
                             "/memmap_on_memory (the attribute arrived in Linux 6.8): leave it unset, or take a "
                             "kernel that has it (6.12, 7.2)");
        // EOPNOTSUPP here: memory_hotplug.memmap_on_memory is off.
        agent.write(kDaxDevices + dev_ + "/memmap_on_memory", *memmap_on_memory ? "1" : "0");
        a.memmap_on_memory = memmap_on_memory;
    }
    const auto bound = [&](const std::string& drv) {
        const auto e = agent.listdir(kDaxDrivers + drv);
        return std::find(e.begin(), e.end(), dev_) != e.end();
    };
    if (bound("device_dax")) agent.write(kDaxDrivers + "device_dax/unbind", dev_);
    const auto t0 = Clock::now();
    // new_id matches the device to kmem and attaches it at once: the probe,
    // add_memory_driver_managed() included, runs inside this write.
    agent.write(kDaxDrivers + "kmem/new_id", dev_);
    if (!bound("kmem")) agent.write(kDaxDrivers + "kmem/bind", dev_);
    a.add_s = since(t0);
    for (int b : a.blocks)
        if (!agent.try_read(kMem + std::to_string(b) + "/state"))
            throw Error("kmem took " + dev_ + " but memory block " + std::to_string(b) +
                        " did not appear\n--- last console lines ---\n" + guest_.console_tail(10));
    const auto t1 = Clock::now();
    if (guest_.kernel_onlines()) {
        a.online_by = "kernel";
        for (int b : a.blocks)
            while (trim(agent.read(kMem + std::to_string(b) + "/state")) != "online") {
                if (Clock::now() - t1 > timeout_)
                    throw Error("memory block " + std::to_string(b) + " of " + dev_ +
                                " was not onlined by the kernel (auto_online_blocks=" + guest_.online_policy() + ")");
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
    } else {
        for (int b : a.blocks) agent.write(kMem + std::to_string(b) + "/state", zone_state_word(zone));
    }
    a.online_s = since(t1);
    return a;
}

KmemRemove DaxLab::remove() {
    auto& agent = guest_.agent();
    KmemRemove r;
    const auto t0 = Clock::now();
    for (int b : blocks()) {
        const auto st = agent.try_read(kMem + std::to_string(b) + "/state");
        if (st && trim(*st) != "offline") agent.write(kMem + std::to_string(b) + "/state", "offline");
    }
    r.offline_s = since(t0);
    const auto t1 = Clock::now();
    agent.write(kDaxDrivers + "kmem/unbind", dev_);
    r.remove_s = since(t1);
    for (int b : blocks())
        if (agent.try_read(kMem + std::to_string(b) + "/state"))
            throw Error("kmem let go of " + dev_ + " but memory block " + std::to_string(b) +
                        " is still there (the kernel could not remove it and keeps it until reboot)\n"
                        "--- last console lines ---\n" +
                        guest_.console_tail(10));
    agent.write(kDaxDrivers + "kmem/remove_id", dev_);
    const auto e = agent.listdir(kDaxDrivers + "device_dax");
    if (std::find(e.begin(), e.end(), dev_) == e.end()) agent.write(kDaxDrivers + "device_dax/bind", dev_);
    return r;
}

nlohmann::json to_json(const KmemAdd& a) {
    return {{"blocks", a.blocks},
            {"memmap_on_memory", a.memmap_on_memory ? nlohmann::json(*a.memmap_on_memory) : nlohmann::json(nullptr)},
            {"add_s", a.add_s},
            {"online_s", a.online_s},
            {"online_by", a.online_by}};
}

nlohmann::json to_json(const KmemRemove& r) { return {{"offline_s", r.offline_s}, {"remove_s", r.remove_s}}; }

}  // namespace memhp::lab
