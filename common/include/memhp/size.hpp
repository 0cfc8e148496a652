// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace memhp {

// Parses "128M", "1G", "1GiB", "512K", "4096" (bytes) into bytes. Binary units.
// Throws UsageError with the offending text on anything else.
[[nodiscard]] std::uint64_t parse_size(std::string_view text);

// 134217728 -> "128M", 1073741824 -> "1G", 1536 -> "1536"; exact, for QEMU.
[[nodiscard]] std::string format_size_exact(std::uint64_t bytes);

// Human form, one decimal where needed: "1.5 GiB", "128 MiB", "4 KiB".
[[nodiscard]] std::string format_size_human(std::uint64_t bytes);

}  // namespace memhp
