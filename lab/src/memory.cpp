// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/memory.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <iterator>
#include <sstream>
#include <thread>

#include "memhp/size.hpp"

namespace memhp::lab {

namespace {
const std::string kMem = "/sys/devices/system/memory";
const std::string kNode = "/sys/devices/system/node";
using Clock = std::chrono::steady_clock;

std::string block_path(int b) { return kMem + "/memory" + std::to_string(b); }
}  // namespace

int parse_block_name(std::string_view name) {
    if (!name.starts_with("memory") || name.size() == 6 || name.size() > 15) return -1;
    int v = 0;
    for (char c : name.substr(6)) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
        v = v * 10 + (c - '0');
    }
    return v;
}

Zone parse_zone(std::string_view text) {
    if (text == "movable") return Zone::Movable;
    if (text == "normal" || text == "kernel") return Zone::Normal;
    if (text == "auto") return Zone::Auto;
    throw UsageError("unknown zone '" + std::string(text) + "': use movable, normal or auto");
}

std::string zone_state_word(Zone z) {
    switch (z) {
        case Zone::Movable: return "online_movable";
        case Zone::Normal: return "online_kernel";
        case Zone::Auto: return "online";
    }
    return "online";
}

std::string zone_name(Zone z) {
    switch (z) {
        case Zone::Movable: return "movable";
        case Zone::Normal: return "normal";
        case Zone::Auto: return "auto";
    }
    return "auto";
}

void virtio_mem_request(QmpClient& qmp, const std::string& id, std::uint64_t bytes) {
    qmp.execute("qom-set", {{"path", id}, {"property", "requested-size"}, {"value", bytes}});
}

std::uint64_t virtio_mem_plugged(QmpClient& qmp, const std::string& id) {
    const json v = qmp.execute("qom-get", {{"path", id}, {"property", "size"}});
    if (!v.is_number_unsigned())
        throw Error("QEMU answered qom-get " + id + ".size with " + v.dump().substr(0, 80) + ", not a size in bytes");
    return v.get<std::uint64_t>();
}

MemoryLab::MemoryLab(Machine& guest) : guest_(guest) {
    auto text = trim(guest_.agent().read(kMem + "/block_size_bytes"));
    block_size_ = std::stoull(text, nullptr, 16);
    if (!block_size_) throw Error("guest reports a memory block size of 0");
}

std::string MemoryLab::memmap_on_memory_param() {
    auto v = guest_.agent().try_read("/sys/module/memory_hotplug/parameters/memmap_on_memory");
    return v ? trim(*v) : "absent";
}

std::vector<int> MemoryLab::block_ids() {
    std::vector<int> ids;
    for (const auto& e : guest_.agent().listdir(kMem))
        if (int b = parse_block_name(e); b >= 0) ids.push_back(b);
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::optional<std::uint64_t> vmstat_value(std::string_view vmstat, std::string_view key) {
    std::istringstream in{std::string(vmstat)};
    std::string name, value;
    while (in >> name >> value)
        if (name == key) {
            std::uint64_t v = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
            if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
            return v;
        }
    return std::nullopt;
}

MemorySnapshot MemoryLab::snapshot() {
    MemorySnapshot s;
    auto& agent = guest_.agent();
    std::vector<std::string> paths = {"/proc/meminfo", "/proc/vmstat"};
    std::vector<int> nodes;
    for (const auto& e : agent.listdir(kNode)) {
        if (e.starts_with("node") && e.size() > 4 && std::isdigit(static_cast<unsigned char>(e[4]))) {
            nodes.push_back(std::stoi(e.substr(4)));
            paths.push_back(kNode + "/" + e + "/meminfo");
        }
    }
    auto ids = block_ids();
    for (int b : ids) paths.push_back(block_path(b) + "/state");
    auto files = agent.read(paths);
    if (auto m = files["/proc/meminfo"]) {
        auto kv = parse_meminfo(*m);
        s.mem_total_kb = kv["MemTotal"];
        s.mem_free_kb = kv["MemFree"];
    }
    for (int n : nodes) {
        if (auto m = files[kNode + "/node" + std::to_string(n) + "/meminfo"]) {
            auto kv = parse_meminfo(*m);
            s.nodes[n] = {kv["MemTotal"], kv["MemFree"]};
        }
    }
    if (auto v = files["/proc/vmstat"]) s.kernel_memmap_pages = vmstat_value(*v, "nr_memmap_pages");
    s.blocks = ids.size();
    for (int b : ids)
        if (auto st = files[block_path(b) + "/state"]; st && trim(*st) == "online") ++s.blocks_online;
    return s;
}

void MemoryLab::wait_blocks(const std::vector<int>& blocks, bool present, Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
        auto ids = block_ids();
        bool all = true;
        for (int b : blocks) {
            bool has = std::binary_search(ids.begin(), ids.end(), b);
            if (has != present) {
                all = false;
                break;
            }
        }
        if (all) return;
        if (Clock::now() >= deadline)
            throw Error(std::string("timed out waiting for the guest to ") + (present ? "show" : "drop") +
                        " memory blocks " + std::to_string(blocks.front()) + ".." + std::to_string(blocks.back()) +
                        "\n--- last console lines ---\n" + guest_.console_tail(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

Dimm MemoryLab::add_dimm(std::uint64_t size, int node, Ms timeout) {
    Dimm d = plug_dimm(size, node);
    wait_blocks(d.blocks, true, timeout);
    return d;
}

Dimm MemoryLab::plug_dimm(std::uint64_t size, int node) {
    if (size == 0 || size % block_size_)
        throw UsageError("DIMM size " + format_size_exact(size) +
                         " is not a multiple of the guest's memory block size (" + format_size_exact(block_size_) +
                         ")");
    Dimm d;
    const int n = next_dimm_++;
    d.id = "memhp-dimm" + std::to_string(n);
    d.backend = "memhp-mem" + std::to_string(n);
    d.node = node;
    d.size = size;
    auto& qmp = guest_.qmp();
    qmp.execute("object-add", {{"qom-type", "memory-backend-ram"}, {"id", d.backend}, {"size", size}});
    try {
        qmp.execute("device_add", {{"driver", "pc-dimm"}, {"id", d.id}, {"memdev", d.backend}, {"node", node}});
    } catch (...) {
        try {
            qmp.execute("object-del", {{"id", d.backend}});
        } catch (...) {}
        throw;
    }
    for (const auto& dev : qmp.execute("query-memory-devices")) {
        const auto& data = dev.value("data", json::object());
        if (data.value("id", "") == d.id) d.addr = data.value("addr", std::uint64_t{0});
    }
    if (!d.addr) throw Error("QEMU did not report an address for " + d.id);
    for (std::uint64_t a = d.addr; a < d.addr + size; a += block_size_)
        d.blocks.push_back(static_cast<int>(a / block_size_));
    return d;
}

void MemoryLab::online(const Dimm& d, Zone zone) {
    for (int b : d.blocks) guest_.agent().write(block_path(b) + "/state", zone_state_word(zone));
}

void MemoryLab::offline(const Dimm& d) {
    for (int b : d.blocks) {
        auto st = guest_.agent().try_read(block_path(b) + "/state");
        if (st && trim(*st) == "offline") continue;
        guest_.agent().write(block_path(b) + "/state", "offline");
    }
}

std::string MemoryLab::zone_of(const Dimm& d) {
    if (d.blocks.empty()) return {};
    auto z = guest_.agent().try_read(block_path(d.blocks.front()) + "/valid_zones");
    return z ? trim(*z) : std::string();
}

void MemoryLab::wait_online(const Dimm& d, Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    for (int b : d.blocks) {
        while (true) {
            auto st = guest_.agent().try_read(block_path(b) + "/state");
            if (st && trim(*st) == "online") break;
            if (Clock::now() >= deadline)
                throw Error("memory block " + std::to_string(b) + " of " + d.id + " is " +
                            (st ? trim(*st) : std::string("gone")) + ", not online, " +
                            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                            " s after the add, although the kernel onlines added memory (auto_online_blocks=" +
                            guest_.online_policy() + ")");
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
}

VirtioMemResize MemoryLab::resize_virtio_mem(std::size_t index, std::uint64_t bytes, Ms timeout, Ms settle) {
    if (index >= guest_.config().virtio_mem.size())
        throw UsageError("the guest has " + std::to_string(guest_.config().virtio_mem.size()) +
                         " virtio-mem device(s), not " + std::to_string(index + 1) + ": boot it with --virtio-mem");
    const auto& dev = guest_.config().virtio_mem[index];
    if (bytes > dev.max_size || bytes % block_size_)
        throw UsageError("virtio-mem size " + format_size_exact(bytes) + " must be a multiple of " +
                         format_size_exact(block_size_) + " up to the device's " + format_size_exact(dev.max_size));
    VirtioMemResize r;
    r.device = virtio_mem_id(index);
    r.requested = bytes;
    auto& qmp = guest_.qmp();
    const auto before = block_ids();
    r.plugged_before = virtio_mem_plugged(qmp, r.device);
    const auto t0 = Clock::now();
    virtio_mem_request(qmp, r.device, bytes);
    // Poll the device, not QEMU's MEMORY_DEVICE_SIZE_CHANGE event: that is
    // rate-limited to one a second per device.
    auto last_change = Clock::now();
    std::uint64_t plugged = r.plugged_before;
    std::vector<int> ids = before;
    while (true) {
        const std::uint64_t now_plugged = virtio_mem_plugged(qmp, r.device);
        auto now_ids = block_ids();
        if (now_plugged != plugged || now_ids != ids) last_change = Clock::now();
        plugged = now_plugged;
        ids = std::move(now_ids);
        const std::size_t want_blocks = before.size() - r.plugged_before / block_size_ + bytes / block_size_;
        if (plugged == bytes && ids.size() == want_blocks) break;
        if (Clock::now() - last_change >= settle && plugged != r.plugged_before) break;  // stopped short
        if (Clock::now() - t0 >= timeout)
            throw Error(r.device + ": the guest plugged " + format_size_exact(plugged) + " of the " +
                        format_size_exact(bytes) + " requested within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                        " s\n--- last console lines ---\n" + guest_.console_tail(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    r.plugged = plugged;
    std::set_difference(ids.begin(), ids.end(), before.begin(), before.end(), std::back_inserter(r.blocks_added));
    std::set_difference(before.begin(), before.end(), ids.begin(), ids.end(), std::back_inserter(r.blocks_removed));
    if (guest_.kernel_onlines() && !r.blocks_added.empty()) {
        Dimm d;
        d.id = r.device;
        d.blocks = r.blocks_added;
        wait_online(d, timeout);
    }
    r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    for (int b : r.blocks_added)
        if (auto st = guest_.agent().try_read(block_path(b) + "/state"); st && trim(*st) == "online") ++r.blocks_online;
    return r;
}

bool MemoryLab::remove(const Dimm& d, Ms timeout) {
    auto& qmp = guest_.qmp();
    qmp.execute("device_del", {{"id", d.id}});
    auto ev = qmp.wait_event(
        "DEVICE_DELETED", [&](const json& data) { return data.value("device", "") == d.id; }, timeout);
    if (!ev)
        throw Error(
            "QEMU did not report DEVICE_DELETED for " + d.id + " within " +
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
            " s: the guest did not eject the DIMM (blocks still online or in use?)\n--- last console lines ---\n" +
            guest_.console_tail(10));
    wait_blocks(d.blocks, false, timeout);
    qmp.execute("object-del", {{"id", d.backend}});
    return true;
}

nlohmann::json to_json(const MemorySnapshot& s) {
    nlohmann::json nodes = nlohmann::json::object();
    for (const auto& [n, m] : s.nodes)
        nodes[std::to_string(n)] = {{"mem_total_kb", m.total_kb}, {"mem_free_kb", m.free_kb}};
    return {{"mem_total_kb", s.mem_total_kb},
            {"mem_free_kb", s.mem_free_kb},
            {"blocks", s.blocks},
            {"blocks_online", s.blocks_online},
            {"nodes", nodes},
            {"kernel_memmap_pages",
             s.kernel_memmap_pages ? nlohmann::json(*s.kernel_memmap_pages) : nlohmann::json(nullptr)}};
}

nlohmann::json to_json(const VirtioMemResize& r) {
    return {{"device", r.device},
            {"requested", r.requested},
            {"plugged_before", r.plugged_before},
            {"plugged", r.plugged},
            {"blocks_added", r.blocks_added},
            {"blocks_removed", r.blocks_removed},
            {"blocks_online", r.blocks_online},
            {"wall_s", r.wall_s}};
}

nlohmann::json to_json(const Dimm& d) {
    return {{"id", d.id}, {"node", d.node}, {"addr", d.addr}, {"size_bytes", d.size}, {"blocks", d.blocks}};
}

}  // namespace memhp::lab
