// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the trace NDJSON reader (lab::parse_ops and
// parse_trace_summary), what the host
// makes of `memhp trace --json` output (or a peer tracer's) read from a
// guest. It may refuse a line with Error; a record it accepts must hold its
// documented types, which the readers (count_phase, ab::cycle_metrics) rely
// on when they take fields with value<T>().
#include <cstddef>
#include <cstdint>
#include <string>

#include "memhp/lab/guest_trace.hpp"

namespace {

template <class T>
T take(const nlohmann::json& o, const char* k, T fallback) {
    return o.value(k, fallback);  // throws type_error if the reader's promise broke
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::vector<nlohmann::json> ops;
    try {
        ops = memhp::lab::parse_ops(text);
    } catch (const memhp::Error&) {
        return 0;
    }
    try {
        std::uint64_t sum = 0;
        for (const auto& o : ops) {
            if (!o.is_object()) __builtin_trap();
            (void)take<std::string>(o, "phase", "");
            (void)take<std::string>(o, "mode", "");
            for (const char* k : {"op_id", "duration_ns", "inclusive_ns", "nested_ns", "parent_op_id",
                                  "free_bytes_consumed", "free_bytes_consumed_inclusive", "nr_pages", "start_pfn"})
                sum += take<std::uint64_t>(o, k, 0);
            sum += static_cast<std::uint64_t>(take<long long>(o, "nid", -1) + take<long long>(o, "ret", 0));
            const auto mm = take<nlohmann::json>(o, "memmap", nlohmann::json::object());
            for (const char* k : {"altmap_pages", "buddy_pages", "pagetable_pages", "remote_pages"})
                sum += take<std::uint64_t>(mm, k, 0);
        }
        sum += memhp::lab::count_phase(ops, "add") + memhp::lab::count_phase(ops, "remove");
        if (sum == 0xdeadbeefdeadbeefULL) return 1;  // keeps the reads
    } catch (const nlohmann::json::exception&) {
        __builtin_trap();  // parse_ops accepted a record its readers cannot read
    }
    // The summary record (schema 4): accepted or refused with Error, never
    // nlohmann's exceptions out of its typed reads.
    try {
        if (const auto s = memhp::lab::parse_trace_summary(text); s && s->lost() && s->events == 0xdeadbeefULL)
            return 1;
    } catch (const memhp::Error&) {
    } catch (const nlohmann::json::exception&) {
        __builtin_trap();
    }
    return 0;
}
