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
    for (const char* line : {R"({"schema":4,"phase":"add"})", R"({"schema":1,"phase":"add"})",
                             R"({"schema":"3","phase":"add"})", R"({"schema":null})"}) {
        try {
            (void)lab::parse_ops(std::string(line) + "\n");
            ADD_FAILURE() << "accepted " << line;
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("this memhp reads schemas 2 to 3"));
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
        {R"({"schema":3,"phase":"add","memmap":{"buddy_pages":-1}})", "\"memmap.buddy_pages\" is not a non-negative integer"},
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
