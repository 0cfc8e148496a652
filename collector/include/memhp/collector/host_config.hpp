// SPDX-License-Identifier: Apache-2.0
#pragma once
// What the running kernel says about memory hot-plug that changes how
// memhp reads its events: the memmap_on_memory parameter and the memory
// block size. One reader, for `memhp trace`, the exporter and the doctor.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "memhp/collector/aggregator.hpp"

namespace memhp::collector {

// memory_hotplug.memmap_on_memory under `root` as the kernel shows it ("Y",
// "N", "force"; trimmed); nullopt where the kernel has no such parameter
// (before 5.12, or built without CONFIG_MHP_MEMMAP_ON_MEMORY).
[[nodiscard]] std::optional<std::string> read_memmap_on_memory(const std::filesystem::path& root = "/");
// Whether that value lets hot-add carve the memmap from the added range.
[[nodiscard]] bool memmap_on_memory_enabled(std::string_view param);
// What sysfs says that changes how events are read, read once by a
// collector::Session: the parameter as shown, and the aggregator's view.
struct SysfsConfig {
    std::optional<std::string> memmap_on_memory;  // read_memmap_on_memory(root)
    AggregatorConfig aggregator;
};
// Under `root`, with `block_size_bytes` (a SysfsNodeResolver's) for the aggregator.
[[nodiscard]] SysfsConfig read_sysfs_config(const std::filesystem::path& root, std::uint64_t block_size_bytes);
// The aggregator's view of this host: memmap_on_memory and `nodes`' block size.
[[nodiscard]] AggregatorConfig host_aggregator_config(const SysfsNodeResolver& nodes,
                                                      const std::filesystem::path& root = "/");

}  // namespace memhp::collector
