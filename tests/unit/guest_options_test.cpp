// SPDX-License-Identifier: Apache-2.0
#include "guest_options.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "memhp/error.hpp"

namespace memhp::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
constexpr std::uint64_t kMiB = 1ULL << 20, kGiB = 1ULL << 30;

TEST(ToGuestConfig, Defaults) {
    auto c = to_guest_config(GuestOptions{});
    EXPECT_EQ(c.kernel, "6.1");
    EXPECT_THAT(c.node_mem, ElementsAre(kGiB, 0u));
    EXPECT_EQ(c.memmap_on_memory, std::nullopt);
    EXPECT_EQ(c.maxmem, 0u);
    EXPECT_EQ(c.accel, "tcg");
    EXPECT_EQ(c.boot_timeout, std::chrono::seconds(180));
}

TEST(ToGuestConfig, NodeMem) {
    GuestOptions o;
    o.node_mem = "1G,0";
    EXPECT_THAT(to_guest_config(o).node_mem, ElementsAre(kGiB, 0u));
    o.node_mem = "2G,512M,0,256MiB";
    EXPECT_THAT(to_guest_config(o).node_mem, ElementsAre(2 * kGiB, 512 * kMiB, 0u, 256 * kMiB));
    o.node_mem = "768M";
    EXPECT_THAT(to_guest_config(o).node_mem, ElementsAre(768 * kMiB));
}

TEST(ToGuestConfig, MemmapOnMemory) {
    GuestOptions o;
    for (const char* on : {"on", "1"}) {
        o.memmap_on_memory = on;
        EXPECT_EQ(to_guest_config(o).memmap_on_memory, true) << on;
    }
    for (const char* off : {"off", "0"}) {
        o.memmap_on_memory = off;
        EXPECT_EQ(to_guest_config(o).memmap_on_memory, false) << off;
    }
    o.memmap_on_memory = "default";
    EXPECT_EQ(to_guest_config(o).memmap_on_memory, std::nullopt);
}

TEST(ToGuestConfig, CopiesTheRest) {
    GuestOptions o;
    o.kernel = "6.12";
    o.cpus = 4;
    o.slots = 8;
    o.maxmem = "8G";
    o.append = {"movable_node"};
    o.accel = "kvm";
    o.boot_timeout_s = 60;
    o.qemu = "/opt/qemu";
    auto c = to_guest_config(o);
    EXPECT_EQ(c.kernel, "6.12");
    EXPECT_EQ(c.cpus, 4u);
    EXPECT_EQ(c.slots, 8u);
    EXPECT_EQ(c.maxmem, 8 * kGiB);
    EXPECT_THAT(c.append, ElementsAre("movable_node"));
    EXPECT_EQ(c.accel, "kvm");
    EXPECT_EQ(c.boot_timeout, std::chrono::seconds(60));
    EXPECT_EQ(c.qemu, "/opt/qemu");
}

TEST(ToGuestConfig, RejectsBadNodeMem) {
    for (const char* bad : {"0,1G", "", "1G,,0", "1G,abc", "1G;0", "1.5G,0"}) {
        GuestOptions o;
        o.node_mem = bad;
        EXPECT_THROW((void)to_guest_config(o), UsageError) << "'" << bad << "'";
    }
}

TEST(ToGuestConfig, RejectsBadKernelSpec) {
    GuestOptions o;
    o.kernel = "newest";
    try {
        (void)to_guest_config(o);
        FAIL() << "accepted --kernel newest";
    } catch (const UsageError& e) {
        EXPECT_THAT(e.what(), HasSubstr("'newest'"));
    }
}

TEST(ToGuestConfig, RejectsBadMaxmem) {
    GuestOptions o;
    o.maxmem = "1G";  // == boot memory
    EXPECT_THROW((void)to_guest_config(o), UsageError);
    o.maxmem = "lots";
    EXPECT_THROW((void)to_guest_config(o), UsageError);
}

// The flags as the commands register them.
GuestOptions parse(std::vector<const char*> args) {
    CLI::App app("test");
    GuestOptions o;
    add_guest_options(&app, o);
    args.insert(args.begin(), "memhp");
    app.parse(static_cast<int>(args.size()), args.data());
    return o;
}

TEST(AddGuestOptions, ParsesFlags) {
    auto o = parse({"--kernel", "6.12", "--node-mem", "2G,0,0", "--memmap-on-memory", "on", "--cpus", "3", "--append",
                    "a=1", "--append", "b", "--accel", "kvm", "--maxmem", "32G"});
    EXPECT_EQ(o.kernel, "6.12");
    EXPECT_EQ(o.node_mem, "2G,0,0");
    EXPECT_EQ(o.memmap_on_memory, "on");
    EXPECT_EQ(o.cpus, 3u);
    EXPECT_THAT(o.append, ElementsAre("a=1", "b"));
    auto c = to_guest_config(o);
    EXPECT_THAT(c.node_mem, ElementsAre(2 * kGiB, 0u, 0u));
    EXPECT_EQ(c.memmap_on_memory, true);
    EXPECT_EQ(c.maxmem, 32 * kGiB);
}

TEST(AddGuestOptions, RejectsValuesOutsideTheChoices) {
    EXPECT_THROW(parse({"--memmap-on-memory", "yes"}), CLI::ValidationError);
    EXPECT_THROW(parse({"--accel", "hvf"}), CLI::ValidationError);
    EXPECT_THROW(parse({"--boot-timeout", "0"}), CLI::ValidationError);
}

}  // namespace
}  // namespace memhp::cli

namespace memhp::cli {
namespace {

TEST(GuestOptionsOnline, DefaultsToTheKernelOnliningAndTakesManual) {
    GuestOptions o;
    EXPECT_EQ(to_guest_config(o).online, lab::OnlineMode::Auto);
    o.online = "manual";
    EXPECT_EQ(to_guest_config(o).online, lab::OnlineMode::Manual);
    o.online = "sometimes";
    EXPECT_THROW((void)to_guest_config(o), UsageError);
}

}  // namespace
}  // namespace memhp::cli
