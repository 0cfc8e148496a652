// SPDX-License-Identifier: Apache-2.0
// The boot-memory arithmetic of a scale run and the refusal of a request
// the host cannot hold.
#include "memhp/ab/scale_plan.hpp"

#include <gtest/gtest.h>

#include "memhp/error.hpp"

using namespace memhp;
using namespace memhp::ab;

namespace {
constexpr std::uint64_t kGiB = 1ull << 30, kMiB = 1ull << 20;
}

TEST(ScalePlan, VirtioMemBootMemoryHoldsTheMemmapOfThePlug) {
    ScaleRequest r;
    r.plug_bytes = 256 * kGiB;
    r.host_available_bytes = 20 * kGiB;
    const auto p = plan_scale(r);
    EXPECT_EQ(p.steps, 2048u);
    EXPECT_EQ(p.memmap_bytes, 4 * kGiB) << "1/64 of 256 GiB";
    // 1 GiB + 4 GiB + 256 MiB of page tables = 5.25 GiB, rounded to 256 MiB.
    EXPECT_EQ(p.boot_bytes, 5 * kGiB + 256 * kMiB);
    EXPECT_EQ(p.maxmem_bytes, p.boot_bytes + 256 * kGiB);
    EXPECT_EQ(p.host_bytes, p.boot_bytes + kQemuOverheadBytes);
    EXPECT_NE(p.arithmetic.find("256 GiB/64 = 4 GiB"), std::string::npos) << p.arithmetic;
}

TEST(ScalePlan, DimmsWithMemmapOnMemoryNeedNoMemmapInBootMemory) {
    ScaleRequest r;
    r.device = ScaleDevice::Dimm;
    r.memmap_on_memory = true;
    r.plug_bytes = 8 * kGiB;
    r.dimm_slots = 64;
    const auto p = plan_scale(r);
    EXPECT_EQ(p.steps, 64u);
    EXPECT_EQ(p.memmap_bytes, 0u);
    EXPECT_EQ(p.boot_bytes, 1 * kGiB + 256 * kMiB);
}

TEST(ScalePlan, RefusesWhatTheHostCannotHoldWithTheArithmetic) {
    ScaleRequest r;
    r.plug_bytes = 1024 * kGiB;  // 16 GiB of memmap per guest
    r.guests = 2;
    r.host_available_bytes = 20 * kGiB;
    try {
        (void)plan_scale(r);
        FAIL() << "a 1 TiB plug in two guests cannot fit 20 GiB";
    } catch (const UsageError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("refusing"), std::string::npos) << m;
        EXPECT_NE(m.find("1 TiB/64 = 16 GiB"), std::string::npos) << m;
        EXPECT_NE(m.find("MemAvailable is 20 GiB"), std::string::npos) << m;
    }
}

TEST(ScalePlan, RefusesPartialStepsAndTooManyDimms) {
    ScaleRequest r;
    r.plug_bytes = 1 * kGiB;
    r.step_bytes = 192 * kMiB;
    EXPECT_THROW((void)plan_scale(r), UsageError) << "a step of 1.5 blocks";
    r.step_bytes = 384 * kMiB;
    EXPECT_THROW((void)plan_scale(r), UsageError) << "1 GiB is not whole 384 MiB steps";
    r.device = ScaleDevice::Dimm;
    r.step_bytes = 128 * kMiB;
    r.dimm_slots = 4;
    try {
        (void)plan_scale(r);
        FAIL();
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("8 DIMMs, the machine has 4 slots"), std::string::npos) << e.what();
    }
}
