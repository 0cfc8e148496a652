// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/op_health.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

namespace memhp::collector {
namespace {

constexpr std::uint64_t kS = 1'000'000'000;

TEST(OpHealth, AnOpOfATaskThatIsGoneIsStaleWhateverItsAge) {
    EXPECT_EQ(classify_op(10 * kS, 10 * kS, 600 * kS, false), OpAge::TaskGone);
    EXPECT_EQ(classify_op(10 * kS, 9 * kS, 0, false), OpAge::TaskGone);
}

TEST(OpHealth, AnOpPastTheAgeLimitIsTooOld) {
    EXPECT_EQ(classify_op(700 * kS, 99 * kS, 600 * kS, true), OpAge::TooOld);
    EXPECT_EQ(classify_op(700 * kS, 100 * kS, 600 * kS, true), OpAge::Live);  // exactly at the limit
    EXPECT_EQ(classify_op(700 * kS, 101 * kS, 600 * kS, true), OpAge::Live);
}

TEST(OpHealth, NoLimitMeansOnlyGoneTasks) { EXPECT_EQ(classify_op(1'000'000 * kS, 1, 0, true), OpAge::Live); }

TEST(OpHealth, AClockBehindTheOpIsNotAnAge) {
    // t0 from another CPU's clock read a little later than now: not negative age.
    EXPECT_EQ(classify_op(5 * kS, 6 * kS, 1, true), OpAge::Live);
}

TEST(OpHealth, TaskExistsForThisProcessAndNotForAnAbsurdTid) {
    EXPECT_TRUE(task_exists(static_cast<std::uint32_t>(::getpid())));
    EXPECT_FALSE(task_exists(0xfffffff0u));
}

TEST(OpHealth, SweepOfNoMapDoesNothing) {
    std::uint32_t inflight = 3;
    const auto c = sweep_ops_map(-1, -1, &inflight, 1, [](std::uint32_t) { return false; });
    EXPECT_EQ(c.task_gone + c.too_old, 0u);
    EXPECT_EQ(inflight, 3u);
}

}  // namespace
}  // namespace memhp::collector
