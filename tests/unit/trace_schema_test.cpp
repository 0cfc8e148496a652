// SPDX-License-Identifier: Apache-2.0
// The trace NDJSON between the collector (writer) and the lab (reader).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "memhp/collector/aggregator.hpp"
#include "memhp/error.hpp"
#include "memhp/lab/guest_trace.hpp"

namespace memhp {
namespace {

using ::testing::HasSubstr;

TEST(TraceSchema, TheLabReadsWhatTheCollectorWrites) {
    EXPECT_EQ(lab::kTraceSchemaNewest, collector::kTraceJsonSchema);
    EXPECT_EQ(lab::kTraceSchemaOldest, collector::kTraceJsonOldestSchema);
}

TEST(TraceSchema, ARecordOfTodayRoundTrips) {
    collector::Operation op;
    op.phase = collector::Phase::Online;
    op.op_id = 7;
    op.parent_op_id = 6;
    op.parent_phase = collector::Phase::Add;
    op.duration_ns = 1234;
    const auto ops = lab::parse_ops(collector::to_json(op).dump() + "\n");
    ASSERT_EQ(ops.size(), 1u);
    EXPECT_EQ(ops[0]["parent_op_id"], 6u);
    EXPECT_EQ(ops[0]["parent_phase"], "add");
}

TEST(TraceSchema, Schema2RecordsStillReadWithoutTheNestingFields) {
    const auto ops = lab::parse_ops(R"({"schema":2,"phase":"add","op_id":1,"duration_ns":5000})"
                                    "\n");
    ASSERT_EQ(ops.size(), 1u);
    EXPECT_EQ(ops[0].value("parent_op_id", std::uint64_t{0}), 0u);
    EXPECT_EQ(ops[0].value("inclusive_ns", ops[0].value("duration_ns", std::uint64_t{0})), 5000u);
}

TEST(TraceSchema, OtherSchemasAreRefusedClearly) {
    for (const char* line : {R"({"schema":5,"phase":"add"})", R"({"schema":1,"phase":"add"})",
                             R"({"schema":"3","phase":"add"})", R"({"schema":null})"}) {
        try {
            (void)lab::parse_ops(std::string(line) + "\n");
            ADD_FAILURE() << "accepted " << line;
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("this memhp reads schemas 2 to 4"));
        }
    }
}

// The last record of memhp trace --json says what the trace lost. Before
// schema 4 it did not exist: drops, orphan page events and aged-out stale
// ops reached the exporter but not the NDJSON (nor, so, results.json).
TEST(TraceSchema, TheSummaryRecordCarriesTheLossesAndIsNoOperation) {
    collector::Stats stats;
    stats.events = 40;
    stats.orphan_page_events = 5;
    stats.decode_errors = 1;
    collector::OpHealth health;
    health.stale_missed_exit = 2;
    health.swept_too_old = 1;
    health.ops_map_full = 4;
    const auto lost = collector::trace_losses(stats, 7, health);
    EXPECT_TRUE(lost.any());
    EXPECT_EQ(lost.stale_ops, 3u);
    EXPECT_EQ(lost.untraced_ops, 4u);
    const auto rec = collector::summary_to_json(stats, lost, health, 9);
    EXPECT_EQ(rec["schema"], collector::kTraceJsonSchema);
    EXPECT_EQ(rec["record"], "summary");
    EXPECT_EQ(rec["lost"], true);

    collector::Operation op;
    op.phase = collector::Phase::Add;
    const std::string text = collector::to_json(op).dump() + "\n" + rec.dump() + "\n";
    EXPECT_EQ(lab::parse_ops(text).size(), 1u) << "the summary is no operation";
    const auto s = lab::parse_trace_summary(text);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->events, 40u);
    EXPECT_EQ(s->dropped_events, 7u);
    EXPECT_EQ(s->orphan_page_events, 5u);
    EXPECT_EQ(s->decode_errors, 1u);
    EXPECT_EQ(s->stale_ops, 3u);
    EXPECT_EQ(s->untraced_ops, 4u);
    EXPECT_TRUE(s->lost());

    // Nothing lost: lost() is false; no summary at all: nullopt.
    const auto clean = collector::summary_to_json(collector::Stats{}, {}, {}, 0);
    EXPECT_EQ(clean["lost"], false);
    ASSERT_TRUE(lab::parse_trace_summary(clean.dump() + "\n"));
    EXPECT_FALSE(lab::parse_trace_summary(clean.dump() + "\n")->lost());
    EXPECT_FALSE(lab::parse_trace_summary(collector::to_json(op).dump() + "\n"));
}

TEST(TraceSchema, MalformedSummariesAndUnknownRecordKindsAreRefused) {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"schema":4,"record":"summary","events":1})", "\"dropped_events\" is missing"},
        {R"({"schema":4,"record":"summary","events":1,"dropped_events":-1,"decode_errors":0,"orphan_page_events":0,"stale_ops":0,"untraced_ops":0,"interrupt_page_events":0})",
         "\"dropped_events\" is missing or not a non-negative integer"},
        {R"({"schema":4,"record":"summary","events":1,"dropped_events":"3","decode_errors":0,"orphan_page_events":0,"stale_ops":0,"untraced_ops":0,"interrupt_page_events":0})",
         "\"dropped_events\""},
        {R"({"schema":4,"record":"heartbeat"})", "a trace record of kind \"heartbeat\""},
        {R"({"schema":4,"record":7})", "a trace record of kind 7"},
    };
    for (const auto& [line, says] : cases) {
        for (auto* parse : {+[](const std::string& t) { (void)lab::parse_ops(t); },
                            +[](const std::string& t) { (void)lab::parse_trace_summary(t); }})
            try {
                parse(std::string(line) + "\n");
                ADD_FAILURE() << "accepted " << line;
            } catch (const Error& e) {
                EXPECT_THAT(e.what(), HasSubstr(says)) << line;
            }
    }
}

TEST(TraceSchema, PeerRecordsWithoutASchemaPass) {
    EXPECT_EQ(lab::parse_ops(R"({"phase":"add","duration_ns":9})"
                             "\nnoise\n")
                  .size(),
              1u);
}

TEST(TraceSchema, RecordsWithMistypedFieldsAreRefusedNamingTheField) {
    // The readers take fields with value<std::uint64_t>() and friends: a
    // string phase threw nlohmann's type_error out of count_phase, and a
    // float duration of 1e300 was converted to an integer (undefined).
    const std::pair<const char*, const char*> cases[] = {
        {R"({"schema":3,"phase":5})", "\"phase\" is not a string"},
        {R"({"schema":3,"phase":"add","duration_ns":1e300})", "\"duration_ns\" is not a non-negative integer"},
        {R"({"schema":3,"phase":"add","duration_ns":-5})", "\"duration_ns\" is not a non-negative integer"},
        {R"({"phase":"add","inclusive_ns":"7"})", "\"inclusive_ns\" is not a non-negative integer"},
        {R"({"schema":3,"phase":"add","nid":1.5})", "\"nid\" is not an integer"},
        {R"({"schema":3,"phase":"add","memmap":[1]})", "\"memmap\" is not an object"},
        {R"({"schema":3,"phase":"add","memmap":{"buddy_pages":-1}})",
         "\"memmap.buddy_pages\" is not a non-negative integer"},
    };
    for (const auto& [line, says] : cases) {
        try {
            (void)lab::parse_ops(std::string(line) + "\n");
            ADD_FAILURE() << "accepted " << line;
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr(says)) << line;
        }
    }
    // Signed fields may be negative: nid -1 (unknown), ret -16 (-EBUSY).
    const auto ops = lab::parse_ops(R"({"schema":3,"phase":"offline","nid":-1,"ret":-16,"duration_ns":3})"
                                    "\n");
    ASSERT_EQ(ops.size(), 1u);
    EXPECT_EQ(lab::count_phase(ops, "offline"), 1u);
}

}  // namespace
}  // namespace memhp
