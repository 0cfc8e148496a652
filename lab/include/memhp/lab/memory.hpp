// SPDX-License-Identifier: Apache-2.0
#pragma once
// Memory hot(un)plug in a lab guest: DIMMs added and removed through QMP,
// blocks onlined and offlined through the guest's sysfs, and the guest's
// memory state read back (per-node meminfo, block counts).
#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memhp/lab/guest.hpp"
#include "memhp/procfs.hpp"

namespace memhp::lab {

struct NodeMemInfo {
    std::uint64_t total_kb = 0;
    std::uint64_t free_kb = 0;
};

struct MemorySnapshot {
    std::map<int, NodeMemInfo> nodes;  // nodes that exist in sysfs
    std::uint64_t mem_total_kb = 0;    // /proc/meminfo
    std::uint64_t mem_free_kb = 0;
    std::size_t blocks = 0;  // memory blocks present
    std::size_t blocks_online = 0;
    // /proc/vmstat nr_memmap_pages (Linux 6.11+): the kernel's own count of
    // memmap pages allocated after boot, altmap pages included. Unset when
    // the kernel has no such counter.
    std::optional<std::uint64_t> kernel_memmap_pages;
    [[nodiscard]] NodeMemInfo node(int n) const {
        auto it = nodes.find(n);
        return it == nodes.end() ? NodeMemInfo{} : it->second;
    }
};

// The value of `key` in /proc/vmstat text ("nr_memmap_pages 512"), if there.
[[nodiscard]] std::optional<std::uint64_t> vmstat_value(std::string_view vmstat, std::string_view key);

// "memory32" -> 32; -1 for anything else.
[[nodiscard]] int parse_block_name(std::string_view name);

enum class Zone { Movable, Normal, Auto };
[[nodiscard]] Zone parse_zone(std::string_view text);  // "movable" | "normal" | "auto"; UsageError otherwise
[[nodiscard]] std::string zone_state_word(Zone z);     // "online_movable" | "online_kernel" | "online"
[[nodiscard]] std::string zone_name(Zone z);

struct Dimm {
    std::string id;       // QEMU device id
    std::string backend;  // memory backend object id
    int node = 0;
    std::uint64_t addr = 0;
    std::uint64_t size = 0;
    std::vector<int> blocks;  // guest memory block numbers
};

// virtio-mem over QMP: the device's requested-size is what the host asks
// for, its size what the guest driver has plugged so far.
void virtio_mem_request(QmpClient& qmp, const std::string& id, std::uint64_t bytes);
[[nodiscard]] std::uint64_t virtio_mem_plugged(QmpClient& qmp, const std::string& id);

// One virtio-mem resize as the guest saw it.
struct VirtioMemResize {
    std::string device;
    std::uint64_t requested = 0;
    std::uint64_t plugged_before = 0;
    std::uint64_t plugged = 0;        // the device's size once the guest settled
    std::vector<int> blocks_added;    // guest memory blocks that appeared
    std::vector<int> blocks_removed;  // and that went
    std::size_t blocks_online = 0;    // of the added blocks, online at the end
    double wall_s = 0;
};

class MemoryLab {
public:
    using Ms = std::chrono::milliseconds;
    explicit MemoryLab(Machine& guest);

    [[nodiscard]] std::uint64_t block_size() const { return block_size_; }
    // The guest's memory_hotplug.memmap_on_memory parameter as it reads ("Y", "N", "force").
    [[nodiscard]] std::string memmap_on_memory_param();
    [[nodiscard]] MemorySnapshot snapshot();
    [[nodiscard]] std::vector<int> block_ids();

    // object-add + device_add a pc-dimm, then waits until the guest shows
    // every block of it. Throws on QMP errors or timeout.
    Dimm add_dimm(std::uint64_t size, int node, Ms timeout = Ms(120000));
    // add_dimm() without the wait: the DIMM is plugged in QEMU, the guest
    // may still be adding it (or have failed to). Throws on QMP errors.
    Dimm plug_dimm(std::uint64_t size, int node);
    // Onlines every block of `d` into `zone`; throws AgentError (with errno) on failure.
    void online(const Dimm& d, Zone zone);
    // Offlines every block; throws AgentError (EBUSY, ...) on failure.
    void offline(const Dimm& d);
    // device_del, waits for DEVICE_DELETED and for the blocks to go, then
    // object-del. Returns true when DEVICE_DELETED was seen.
    bool remove(const Dimm& d, Ms timeout = Ms(120000));
    // The zone a block of `d` is in now, read from valid_zones ("Movable", "Normal", ...).
    [[nodiscard]] std::string zone_of(const Dimm& d);
    // Waits until every block of `d` is online (the kernel onlines them
    // itself under auto-online); throws on timeout.
    void wait_online(const Dimm& d, Ms timeout = Ms(120000));
    // Sets virtio-mem device `index`'s requested-size and waits for the
    // guest's view: the plugged size reaching it (the guest may stop short,
    // e.g. when it cannot offline memory to unplug: then whatever it reached
    // once nothing moved for `settle`), the block set steady, and the added
    // blocks online when the kernel onlines. Times it from the host.
    VirtioMemResize resize_virtio_mem(std::size_t index, std::uint64_t bytes, Ms timeout = Ms(300000),
                                      Ms settle = Ms(5000));

private:
    void wait_blocks(const std::vector<int>& blocks, bool present, Ms timeout);
    Machine& guest_;
    std::uint64_t block_size_ = 0;
    int next_dimm_ = 0;
};

[[nodiscard]] nlohmann::json to_json(const MemorySnapshot& s);
[[nodiscard]] nlohmann::json to_json(const Dimm& d);
[[nodiscard]] nlohmann::json to_json(const VirtioMemResize& r);

}  // namespace memhp::lab
