#include "memhp/lab/memory.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
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

MemoryLab::MemoryLab(Guest& guest) : guest_(guest) {
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
        throw UsageError("DIMM size " + format_size_exact(size) + " is not a multiple of the guest's memory block size (" +
                         format_size_exact(block_size_) + ")");
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
        } catch (...) {
        }
        throw;
    }
    for (const auto& dev : qmp.execute("query-memory-devices")) {
        const auto& data = dev.value("data", json::object());
        if (data.value("id", "") == d.id) d.addr = data.value("addr", std::uint64_t{0});
    }
    if (!d.addr) throw Error("QEMU did not report an address for " + d.id);
    for (std::uint64_t a = d.addr; a < d.addr + size; a += block_size_) d.blocks.push_back(static_cast<int>(a / block_size_));
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

bool MemoryLab::remove(const Dimm& d, Ms timeout) {
    auto& qmp = guest_.qmp();
    qmp.execute("device_del", {{"id", d.id}});
    auto ev = qmp.wait_event("DEVICE_DELETED", [&](const json& data) { return data.value("device", "") == d.id; },
                             timeout);
    if (!ev)
        throw Error("QEMU did not report DEVICE_DELETED for " + d.id + " within " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
                    " s: the guest did not eject the DIMM (blocks still online or in use?)\n--- last console lines ---\n" +
                    guest_.console_tail(10));
    wait_blocks(d.blocks, false, timeout);
    qmp.execute("object-del", {{"id", d.backend}});
    return true;
}

nlohmann::json to_json(const MemorySnapshot& s) {
    nlohmann::json nodes = nlohmann::json::object();
    for (const auto& [n, m] : s.nodes) nodes[std::to_string(n)] = {{"mem_total_kb", m.total_kb}, {"mem_free_kb", m.free_kb}};
    return {{"mem_total_kb", s.mem_total_kb}, {"mem_free_kb", s.mem_free_kb}, {"blocks", s.blocks},
            {"blocks_online", s.blocks_online}, {"nodes", nodes},
            {"kernel_memmap_pages", s.kernel_memmap_pages ? nlohmann::json(*s.kernel_memmap_pages) : nlohmann::json(nullptr)}};
}

nlohmann::json to_json(const Dimm& d) {
    return {{"id", d.id}, {"node", d.node}, {"addr", d.addr}, {"size_bytes", d.size}, {"blocks", d.blocks}};
}

}  // namespace memhp::lab
