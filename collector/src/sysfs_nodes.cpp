// SPDX-License-Identifier: Apache-2.0
// SysfsNodeResolver: the node of a pfn from /sys/devices/system/memory.
#include <cctype>
#include <limits>
#include <string_view>
#include <system_error>

#include "memhp/collector/aggregator.hpp"
#include "memhp/collector/host_config.hpp"
#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace memhp::collector {

namespace fs = std::filesystem;

namespace {
// The number after `prefix` in a sysfs name ("memory42" -> 42, "node1" -> 1), or -1.
std::int64_t numbered_name(std::string_view name, std::string_view prefix) {
    if (!name.starts_with(prefix)) return -1;
    auto digits = name.substr(prefix.size());
    if (digits.empty() || digits.size() > 18) return -1;
    std::int64_t v = 0;
    for (char c : digits) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
        v = v * 10 + (c - '0');
    }
    return v;
}

// block_size_bytes holds the block size in hex without a prefix ("8000000").
std::uint64_t parse_block_size(const std::string& raw, const fs::path& path) {
    std::string text = trim(raw);
    std::string_view digits = text;
    if (digits.starts_with("0x") || digits.starts_with("0X")) digits.remove_prefix(2);
    bool ok = !digits.empty() && digits.size() <= 16;
    std::uint64_t v = 0;
    for (char c : digits) {
        if (!ok) break;
        const auto u = static_cast<unsigned char>(c);
        if (!std::isxdigit(u)) {
            ok = false;
            break;
        }
        v = v * 16 + static_cast<std::uint64_t>(std::isdigit(u) ? u - '0' : std::tolower(u) - 'a' + 10);
    }
    if (!ok || v == 0)
        throw Error(path.string() + " holds '" + text +
                    "', not a memory block size: expected a non-zero hexadecimal number such as 8000000");
    return v;
}
}  // namespace

SysfsNodeResolver::SysfsNodeResolver(std::filesystem::path sys_root, std::uint64_t page_size)
    : root_(std::move(sys_root)), page_size_(page_size) {
    if (page_size_ == 0) throw Error("page size must not be 0");
    const fs::path path = root_ / "sys/devices/system/memory/block_size_bytes";
    auto text = try_read_file(path, 64 * 1024);  // a sysfs attribute: one page at most
    if (!text)
        throw Error("cannot read " + path.string() +
                    ": is sysfs mounted there, and was the kernel built with CONFIG_MEMORY_HOTPLUG?");
    block_size_ = parse_block_size(*text, path);
    refresh();
}

void SysfsNodeResolver::refresh() {
    // Blocks come and go with hot-plug: rebuild the map from scratch. An
    // unreadable directory leaves the map empty (every pfn unknown), never throws.
    std::map<std::uint64_t, int> fresh;
    const fs::path dir = root_ / "sys/devices/system/memory";
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const auto block = numbered_name(it->path().filename().native(), "memory");
        if (block < 0) continue;
        // nodeN is a symlink to the node's directory; fixtures may use a plain dir.
        std::error_code sub_ec;
        for (fs::directory_iterator sub(it->path(), sub_ec), sub_end; !sub_ec && sub != sub_end;
             sub.increment(sub_ec)) {
            const auto node = numbered_name(sub->path().filename().native(), "node");
            if (node >= 0 && node <= std::numeric_limits<int>::max()) {
                fresh[static_cast<std::uint64_t>(block)] = static_cast<int>(node);
                break;
            }
        }
    }
    block_node_ = std::move(fresh);
}

int SysfsNodeResolver::node_of_pfn(std::uint64_t pfn) {
    const auto block = static_cast<std::uint64_t>(static_cast<unsigned __int128>(pfn) * page_size_ / block_size_);
    if (auto it = block_node_.find(block); it != block_node_.end()) return it->second;
    refresh();  // a block hot-added since the last read
    if (auto it = block_node_.find(block); it != block_node_.end()) return it->second;
    return -1;
}

}  // namespace memhp::collector

namespace memhp::collector {

std::optional<std::string> read_memmap_on_memory(const std::filesystem::path& root) {
    auto text = try_read_file(root / "sys/module/memory_hotplug/parameters/memmap_on_memory");
    if (!text) return std::nullopt;
    return trim(*text);
}

bool memmap_on_memory_enabled(std::string_view param) { return param == "Y" || param == "force"; }

SysfsConfig read_sysfs_config(const std::filesystem::path& root, std::uint64_t block_size_bytes) {
    SysfsConfig c;
    c.memmap_on_memory = read_memmap_on_memory(root);
    c.aggregator.memmap_on_memory_enabled = c.memmap_on_memory && memmap_on_memory_enabled(*c.memmap_on_memory);
    c.aggregator.block_size_bytes = block_size_bytes;
    return c;
}

AggregatorConfig host_aggregator_config(const SysfsNodeResolver& nodes, const std::filesystem::path& root) {
    return read_sysfs_config(root, nodes.block_size_bytes()).aggregator;
}

}  // namespace memhp::collector
