// SPDX-License-Identifier: Apache-2.0
#include "memhp/procfs.hpp"

#include <map>
#include <sstream>

namespace memhp {

namespace {

// "Node 0, zone   DMA32 ..." (the stream is at the line's start): reads the
// node and zone name and leaves the stream after them. False for other lines.
bool read_zone_header(std::istringstream& ls, int& node, std::string& zone) {
    std::string word, nid, zone_word;
    if (!(ls >> word) || word != "Node" || !(ls >> nid >> zone_word >> zone) || zone_word != "zone") return false;
    if (!nid.empty() && nid.back() == ',') nid.pop_back();
    try {
        node = std::stoi(nid);
    } catch (const std::exception&) {
        return false;
    }
    return true;
}

}  // namespace

std::uint64_t BuddyZone::blocks_at_least(unsigned order) const {
    std::uint64_t n = 0;
    for (std::size_t o = order; o < free.size(); ++o) n += free[o];
    return n;
}

std::uint64_t BuddyZone::free_pages() const {
    std::uint64_t n = 0;
    for (std::size_t o = 0; o < free.size(); ++o) n += free[o] << o;
    return n;
}

std::vector<BuddyZone> parse_buddyinfo(std::string_view text) {
    std::vector<BuddyZone> out;
    std::istringstream in{std::string(text)};
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        BuddyZone z;
        if (!read_zone_header(ls, z.node, z.zone)) continue;
        std::uint64_t v = 0;
        while (ls >> v) z.free.push_back(v);
        if (!z.free.empty()) out.push_back(std::move(z));
    }
    return out;
}

std::uint64_t high_order_free_blocks(const std::vector<BuddyZone>& zones, int node, unsigned order) {
    std::uint64_t n = 0;
    for (const auto& z : zones)
        if (z.node == node) n += z.blocks_at_least(order);
    return n;
}

std::vector<ZoneWatermarks> parse_zoneinfo(std::string_view text) {
    std::vector<ZoneWatermarks> out;
    std::istringstream in{std::string(text)};
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        ZoneWatermarks head;
        if (read_zone_header(ls, head.node, head.zone)) {
            out.push_back(head);
            continue;
        }
        ls.clear();
        ls.str(line);
        std::string first;
        ls >> first;
        if (out.empty()) continue;
        std::uint64_t v = 0;
        if (!(ls >> v)) continue;
        auto& z = out.back();
        if (first == "min")
            z.min_pages = v;
        else if (first == "low")
            z.low_pages = v;
        else if (first == "high")
            z.high_pages = v;
        else if (first == "managed")
            z.managed_pages = v;
    }
    return out;
}

std::map<std::string, std::uint64_t> parse_meminfo(std::string_view text) {
    std::map<std::string, std::uint64_t> out;
    std::istringstream in{std::string(text)};
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string first;
        ls >> first;
        if (first == "Node") {  // "Node 1 MemTotal:  131072 kB"
            std::string nid;
            ls >> nid >> first;
        }
        if (first.empty() || first.back() != ':') continue;
        first.pop_back();
        std::uint64_t v = 0;
        if (ls >> v) out[first] = v;
    }
    return out;
}

}  // namespace memhp
