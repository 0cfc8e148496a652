// SPDX-License-Identifier: Apache-2.0
#include "memhp/size.hpp"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <limits>

#include "memhp/error.hpp"

namespace memhp {

std::uint64_t parse_size(std::string_view text) {
    const std::string original(text);
    std::uint64_t value = 0;
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(begin, end, value);
    if (ec != std::errc() || ptr == begin)
        throw UsageError("invalid size '" + original + "': expected a number with an optional unit, e.g. 128M or 1G");
    std::string unit(ptr, end);
    for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (unit.size() > 1 && (unit.ends_with("IB") || unit.ends_with("B"))) {
        unit = unit.substr(0, unit.ends_with("IB") ? unit.size() - 2 : unit.size() - 1);
    }
    unsigned shift = 0;
    if (unit.empty() || unit == "B")
        shift = 0;
    else if (unit == "K")
        shift = 10;
    else if (unit == "M")
        shift = 20;
    else if (unit == "G")
        shift = 30;
    else if (unit == "T")
        shift = 40;
    else
        throw UsageError("invalid size '" + original + "': unknown unit '" + std::string(ptr, end) +
                         "' (use K, M, G or T, binary multiples)");
    if (shift && value > (std::numeric_limits<std::uint64_t>::max() >> shift))
        throw UsageError("invalid size '" + original + "': too large");
    return value << shift;
}

std::string format_size_exact(std::uint64_t bytes) {
    static constexpr struct {
        unsigned shift;
        const char* unit;
    } units[] = {{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}};
    if (bytes == 0) return "0";
    for (const auto& u : units) {
        const std::uint64_t mask = (std::uint64_t{1} << u.shift) - 1;
        if ((bytes & mask) == 0) return std::to_string(bytes >> u.shift) + u.unit;
    }
    return std::to_string(bytes);
}

std::string format_size_human(std::uint64_t bytes) {
    static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(bytes);
    int i = 0;
    while (v >= 1024.0 && i < 4) {
        v /= 1024.0;
        ++i;
    }
    char buf[32];
    if (i == 0)
        std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    else if (v == static_cast<double>(static_cast<std::uint64_t>(v)))
        std::snprintf(buf, sizeof buf, "%.0f %s", v, units[i]);
    else
        std::snprintf(buf, sizeof buf, "%.1f %s", v, units[i]);
    return buf;
}

}  // namespace memhp
