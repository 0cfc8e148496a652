// SPDX-License-Identifier: Apache-2.0
#pragma once
// /proc parsers shared by the lab, the scenarios and the hog (meminfo
// further down). /proc/buddyinfo and /proc/zoneinfo as the scenarios read them: free blocks
// per order per zone, and each zone's watermarks. Pure parsers, tested on
// fixture text.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace memhp {

struct BuddyZone {
    int node = 0;
    std::string zone;                 // "DMA", "DMA32", "Normal", "Movable"
    std::vector<std::uint64_t> free;  // free blocks of order 0, 1, ...
    // Free blocks of order >= `order`.
    [[nodiscard]] std::uint64_t blocks_at_least(unsigned order) const;
    [[nodiscard]] std::uint64_t free_pages() const;
};

// "Node 0, zone   DMA32   3   4 ..." per line; lines it cannot read are skipped.
[[nodiscard]] std::vector<BuddyZone> parse_buddyinfo(std::string_view text);
// Sum over `node`'s zones of the free blocks of order >= `order`.
[[nodiscard]] std::uint64_t high_order_free_blocks(const std::vector<BuddyZone>& zones, int node, unsigned order);

struct ZoneWatermarks {
    int node = 0;
    std::string zone;
    std::uint64_t min_pages = 0, low_pages = 0, high_pages = 0, managed_pages = 0;
};

// The "Node N, zone NAME" sections of /proc/zoneinfo with their min/low/high/managed.
[[nodiscard]] std::vector<ZoneWatermarks> parse_zoneinfo(std::string_view text);

// Parses /proc/meminfo or /sys/devices/system/node/nodeN/meminfo into
// {"MemTotal": kB, ...} (the "Node N " prefix is dropped).
[[nodiscard]] std::map<std::string, std::uint64_t> parse_meminfo(std::string_view text);

}  // namespace memhp
