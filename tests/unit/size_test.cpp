// SPDX-License-Identifier: Apache-2.0
#include "memhp/size.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "memhp/error.hpp"

namespace memhp {
namespace {

using ::testing::HasSubstr;
constexpr std::uint64_t kKiB = 1ULL << 10, kMiB = 1ULL << 20, kGiB = 1ULL << 30, kTiB = 1ULL << 40;

TEST(ParseSize, BareBytes) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("4096"), 4096u);
    EXPECT_EQ(parse_size("1536B"), 1536u);
}

TEST(ParseSize, SingleLetterUnits) {
    EXPECT_EQ(parse_size("512K"), 512 * kKiB);
    EXPECT_EQ(parse_size("128M"), 128 * kMiB);
    EXPECT_EQ(parse_size("1G"), kGiB);
    EXPECT_EQ(parse_size("2T"), 2 * kTiB);
    EXPECT_EQ(parse_size("1g"), kGiB);
    EXPECT_EQ(parse_size("64m"), 64 * kMiB);
}

TEST(ParseSize, IbAndBSuffixes) {
    EXPECT_EQ(parse_size("1KiB"), kKiB);
    EXPECT_EQ(parse_size("256MiB"), 256 * kMiB);
    EXPECT_EQ(parse_size("1GiB"), kGiB);
    EXPECT_EQ(parse_size("3TiB"), 3 * kTiB);
    EXPECT_EQ(parse_size("1GB"), kGiB);  // binary even when spelled GB
}

TEST(ParseSize, LargestValuesThatFit) {
    EXPECT_EQ(parse_size("16777215T"), 16777215ULL << 40);
    EXPECT_EQ(parse_size("18446744073709551615"), UINT64_MAX);
}

TEST(ParseSize, RejectsGarbageWithTheOffendingText) {
    for (const char* bad : {"", "M", "12Q", "1.5G", "-1", "G1", " 1G", "1 G", "1GiBs", "0x10"}) {
        try {
            (void)parse_size(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), HasSubstr("'" + std::string(bad) + "'"));
        }
    }
}

TEST(ParseSize, RejectsOverflow) {
    EXPECT_THROW((void)parse_size("16777216T"), UsageError);  // 2^64
    EXPECT_THROW((void)parse_size("18446744073709551615K"), UsageError);
    EXPECT_THROW((void)parse_size("18446744073709551616"), UsageError);  // from_chars out of range
    EXPECT_THROW((void)parse_size("99999999999999999999999G"), UsageError);
}

TEST(ParseSize, UsageErrorIsAnError) { EXPECT_THROW((void)parse_size("12Q"), Error); }

TEST(FormatSizeExact, LargestWholeUnit) {
    EXPECT_EQ(format_size_exact(0), "0");
    EXPECT_EQ(format_size_exact(1), "1");
    EXPECT_EQ(format_size_exact(1536), "1536");
    EXPECT_EQ(format_size_exact(kKiB), "1K");
    EXPECT_EQ(format_size_exact(134217728), "128M");
    EXPECT_EQ(format_size_exact(1536 * kMiB), "1536M");
    EXPECT_EQ(format_size_exact(kGiB), "1G");
    EXPECT_EQ(format_size_exact(17 * kGiB), "17G");
    EXPECT_EQ(format_size_exact(3 * kTiB), "3T");
}

TEST(FormatSizeExact, RoundTripsThroughParseSize) {
    for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1536}, 129 * kMiB, 17 * kGiB + kKiB,
                            5 * kTiB, UINT64_MAX, UINT64_MAX - (kKiB - 1)})
        EXPECT_EQ(parse_size(format_size_exact(v)), v) << format_size_exact(v);
}

TEST(FormatSizeHuman, Examples) {
    EXPECT_EQ(format_size_human(0), "0 B");
    EXPECT_EQ(format_size_human(1023), "1023 B");
    EXPECT_EQ(format_size_human(1536), "1.5 KiB");
    EXPECT_EQ(format_size_human(4 * kKiB), "4 KiB");
    EXPECT_EQ(format_size_human(128 * kMiB), "128 MiB");
    EXPECT_EQ(format_size_human(kGiB + kGiB / 2), "1.5 GiB");
    EXPECT_EQ(format_size_human(2 * kTiB), "2 TiB");
    EXPECT_EQ(format_size_human(2048 * kTiB), "2048 TiB");  // TiB is the largest unit
}

}  // namespace
}  // namespace memhp
