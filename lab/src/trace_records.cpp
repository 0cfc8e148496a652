// SPDX-License-Identifier: Apache-2.0
// The trace NDJSON reader: memhp trace --json records as the host reads them
// (guest_trace.hpp). Apart from GuestTrace so the fuzz target links it alone.
#include <array>
#include <string_view>

#include "memhp/lab/guest_trace.hpp"

namespace memhp::lab {

namespace {

// The fields memhp's readers take from a record, with the type they read
// them as (docs/trace-json.md): counters and times as unsigned 64-bit, ids
// that may be -1 or a negative errno as signed. A record with one of them
// of another type is refused: a reader must never convert a string, a
// float out of range or a negative number into a count.
constexpr std::array kUnsignedFields = {"op_id",
                                        "tid",
                                        "ts_ns",
                                        "start_pfn",
                                        "nr_pages",
                                        "duration_ns",
                                        "inclusive_ns",
                                        "nested_ns",
                                        "nested_ops",
                                        "parent_op_id",
                                        "mhp_flags",
                                        "free_bytes_consumed",
                                        "free_bytes_consumed_inclusive"};
constexpr std::array kSignedFields = {"nid", "ret"};
constexpr std::array kStringFields = {"phase", "parent_phase", "mode", "caller"};
constexpr std::array kCountObjects = {"memmap", "node_check"};

void check_record(const nlohmann::json& j, std::string_view line) {
    const auto bad = [&](const std::string& field, const char* want) {
        throw Error("a trace record's \"" + field + "\" is not " + want +
                    " (docs/trace-json.md): " + std::string(line.substr(0, 200)));
    };
    for (const char* f : kUnsignedFields)
        if (auto it = j.find(f); it != j.end() && !it->is_number_unsigned()) bad(f, "a non-negative integer");
    for (const char* f : kSignedFields)
        if (auto it = j.find(f); it != j.end() && !it->is_number_integer()) bad(f, "an integer");
    for (const char* f : kStringFields)
        if (auto it = j.find(f); it != j.end() && !it->is_string()) bad(f, "a string");
    for (const char* f : kCountObjects) {
        const auto it = j.find(f);
        if (it == j.end()) continue;
        if (!it->is_object()) bad(f, "an object");
        for (const auto& [k, v] : it->items())
            if (!v.is_number_unsigned() && !v.is_boolean()) bad(std::string(f) + "." + k, "a non-negative integer");
    }
}

constexpr std::array kSummaryCounts = {"events",    "dropped_events", "decode_errors",        "orphan_page_events",
                                       "stale_ops", "untraced_ops",   "interrupt_page_events"};

// A summary record's counts are what the gate trusts a run by: each one
// present and a non-negative integer.
void check_summary(const nlohmann::json& j, std::string_view line) {
    for (const char* f : kSummaryCounts) {
        const auto it = j.find(f);
        if (it == j.end() || !it->is_number_unsigned())
            throw Error(std::string("a trace summary record's \"") + f +
                        "\" is missing or not a non-negative integer (docs/trace-json.md): " +
                        std::string(line.substr(0, 200)));
    }
}

// Every record of the text, checked; summaries and operations apart.
void parse_records(const std::string& text, std::vector<nlohmann::json>* ops, std::vector<nlohmann::json>* summaries) {
    std::size_t start = 0;
    for (auto end = text.find('\n'); end != std::string::npos; start = end + 1, end = text.find('\n', start)) {
        const std::string_view line(text.data() + start, end - start);
        if (line.empty() || line[0] != '{') continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded()) throw Error("a tracer wrote a line that is not JSON: " + std::string(line));
        // memhp trace's records carry their schema (the peer's carry none).
        if (j.is_object() && j.contains("schema")) {
            const auto& v = j["schema"];
            if (!v.is_number_integer() || v.get<long long>() < kTraceSchemaOldest ||
                v.get<long long>() > kTraceSchemaNewest)
                throw Error("a trace record has schema " + v.dump().substr(0, 20) + "; this memhp reads schemas " +
                            std::to_string(kTraceSchemaOldest) + " to " + std::to_string(kTraceSchemaNewest) +
                            " (docs/trace-json.md): run the memhp that wrote it, or rebuild both from one tree");
        }
        if (j.is_object() && j.contains("record")) {
            if (j["record"] != "summary")
                throw Error("a trace record of kind " + j["record"].dump().substr(0, 40) +
                            " this memhp does not know (docs/trace-json.md): " + std::string(line.substr(0, 200)));
            check_summary(j, line);
            if (summaries) summaries->push_back(std::move(j));
            continue;
        }
        check_record(j, line);
        if (ops) ops->push_back(std::move(j));
    }
}

}  // namespace

std::vector<nlohmann::json> parse_ops(const std::string& text) {
    std::vector<nlohmann::json> ops;
    parse_records(text, &ops, nullptr);
    return ops;
}

std::optional<TraceSummary> parse_trace_summary(const std::string& text) {
    std::vector<nlohmann::json> summaries;
    parse_records(text, nullptr, &summaries);
    if (summaries.empty()) return std::nullopt;
    const auto& j = summaries.back();
    TraceSummary s;
    s.events = j["events"].get<std::uint64_t>();
    s.dropped_events = j["dropped_events"].get<std::uint64_t>();
    s.decode_errors = j["decode_errors"].get<std::uint64_t>();
    s.orphan_page_events = j["orphan_page_events"].get<std::uint64_t>();
    s.stale_ops = j["stale_ops"].get<std::uint64_t>();
    s.untraced_ops = j["untraced_ops"].get<std::uint64_t>();
    return s;
}

std::size_t count_phase(const std::vector<nlohmann::json>& ops, const std::string& phase) {
    std::size_t n = 0;
    for (const auto& o : ops)
        if (o.value("phase", "") == phase) ++n;
    return n;
}

}  // namespace memhp::lab
