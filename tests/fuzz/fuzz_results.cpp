// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the results loader (memhp report / compare input).
// Anything may be refused with BadResults; nothing may crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "memhp/ab/results.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const auto r = memhp::ab::parse_results(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
        // The typed model holds what the loader promised.
        for (const auto& a : r.arms)
            if (!memhp::ab::valid_arm_name(a.name)) __builtin_trap();
    } catch (const memhp::ab::BadResults&) {}
    return 0;
}
