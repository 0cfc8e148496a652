// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the /proc parsers memhp runs on guest and host text
// (buddyinfo, zoneinfo, meminfo) and the kernel symbol lists (kallsyms,
// available_filter_functions, the kprobe blacklist). The first byte picks one.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "memhp/collector/kernel_symbols.hpp"
#include "memhp/error.hpp"
#include "memhp/procfs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    static const std::set<std::string> wanted = {"add_memory_resource", "online_pages", "__add_pages",
                                                 "try_remove_memory"};
    try {
        switch (data[0] % 6) {
            case 0: (void)memhp::parse_buddyinfo(text); break;
            case 1: (void)memhp::parse_zoneinfo(text); break;
            case 2: (void)memhp::parse_meminfo(text); break;
            case 3: (void)memhp::collector::parse_kallsyms(text, wanted); break;
            case 4: (void)memhp::collector::parse_function_list(text, wanted); break;
            default: (void)memhp::collector::parse_kprobe_blacklist(text, wanted); break;
        }
    } catch (const memhp::Error&) {}
    return 0;
}
