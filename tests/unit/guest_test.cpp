// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/guest.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace memhp::lab {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
constexpr std::uint64_t kMiB = 1ULL << 20, kGiB = 1ULL << 30;

// Values following each occurrence of `flag`.
std::vector<std::string> values_of(const std::vector<std::string>& argv, const std::string& flag) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i + 1 < argv.size(); ++i)
        if (argv[i] == flag) out.push_back(argv[i + 1]);
    return out;
}

std::string value_of(const std::vector<std::string>& argv, const std::string& flag) {
    auto v = values_of(argv, flag);
    EXPECT_EQ(v.size(), 1u) << flag;
    return v.empty() ? std::string() : v.front();
}

std::vector<std::string> command(const GuestConfig& cfg, const SharePlan& shares = {}) {
    return qemu_command(cfg, "/cache/boot/vmlinuz-6.1.0-56-amd64", "/cache/initramfs/i.cpio", "/tmp/run",
                        "/src/build/bin/memhp-agent", "/src", shares);
}

TEST(Validate, DefaultsAreValid) { EXPECT_NO_THROW(validate(GuestConfig{})); }

TEST(Validate, Node0NeedsMemory) {
    GuestConfig cfg;
    cfg.node_mem = {0, kGiB};
    try {
        validate(cfg);
        FAIL() << "accepted a memoryless node 0";
    } catch (const UsageError& e) {
        EXPECT_THAT(e.what(), HasSubstr("node 0"));
    }
    cfg.node_mem = {};
    EXPECT_THROW(validate(cfg), UsageError);
}

TEST(Validate, MemorylessOtherNodesAreFine) {
    GuestConfig cfg;
    cfg.node_mem = {kGiB, 0, 512 * kMiB, 0};
    EXPECT_NO_THROW(validate(cfg));
}

TEST(Validate, Accel) {
    GuestConfig cfg;
    cfg.accel = "kvm";
    EXPECT_NO_THROW(validate(cfg));
    cfg.accel = "hvf";
    try {
        validate(cfg);
        FAIL() << "accepted hvf";
    } catch (const UsageError& e) {
        EXPECT_THAT(e.what(), HasSubstr("'hvf'"));
    }
    cfg.accel = "";
    EXPECT_THROW(validate(cfg), UsageError);
}

TEST(Validate, MaxmemMustExceedBootMemory) {
    GuestConfig cfg;
    cfg.node_mem = {kGiB, 512 * kMiB};
    cfg.maxmem = kGiB + 512 * kMiB;  // equal
    try {
        validate(cfg);
        FAIL() << "accepted maxmem == boot memory";
    } catch (const UsageError& e) {
        EXPECT_THAT(e.what(), HasSubstr("1536M"));
    }
    cfg.maxmem = kGiB;
    EXPECT_THROW(validate(cfg), UsageError);
    cfg.maxmem = 2 * kGiB;
    EXPECT_NO_THROW(validate(cfg));
    cfg.maxmem = 0;  // default: boot + 16G
    EXPECT_NO_THROW(validate(cfg));
}

TEST(Validate, OtherLimits) {
    auto rejects = [](auto mutate) {
        GuestConfig cfg;
        mutate(cfg);
        EXPECT_THROW(validate(cfg), UsageError);
    };
    rejects([](GuestConfig& c) { c.cpus = 0; });
    rejects([](GuestConfig& c) { c.cpus = 65; });
    rejects([](GuestConfig& c) { c.slots = 0; });
    rejects([](GuestConfig& c) { c.slots = 257; });
    rejects([](GuestConfig& c) { c.node_mem = {kGiB + 4096}; });
    rejects([](GuestConfig& c) { c.node_mem = std::vector<std::uint64_t>(65, kGiB); });
    rejects([](GuestConfig& c) { c.boot_timeout = std::chrono::seconds(0); });
}

TEST(QemuCommand, MachineCpuAndMemory) {
    auto argv = command(GuestConfig{});
    ASSERT_FALSE(argv.empty());
    EXPECT_EQ(argv[0], "qemu-system-x86_64");
    EXPECT_EQ(value_of(argv, "-machine"), "q35,accel=tcg");
    EXPECT_EQ(value_of(argv, "-cpu"), "max");
    EXPECT_EQ(value_of(argv, "-smp"), "2");
    EXPECT_EQ(value_of(argv, "-m"), "1G,slots=16,maxmem=17G");
    EXPECT_EQ(value_of(argv, "-kernel"), "/cache/boot/vmlinuz-6.1.0-56-amd64");
    EXPECT_EQ(value_of(argv, "-initrd"), "/cache/initramfs/i.cpio");
    EXPECT_THAT(argv, Contains("-nodefaults"));
    EXPECT_THAT(argv, Contains("-no-reboot"));
}

TEST(QemuCommand, NumaNodesAndMemoryless) {
    auto argv = command(GuestConfig{});
    EXPECT_THAT(values_of(argv, "-numa"), ElementsAre("node,nodeid=0,cpus=0-1,memdev=boot0", "node,nodeid=1"));
    EXPECT_THAT(values_of(argv, "-object"), ElementsAre("memory-backend-ram,id=boot0,size=1G"));
}

TEST(QemuCommand, ExplicitMaxmemAndSeveralNodes) {
    GuestConfig cfg;
    cfg.node_mem = {kGiB, 512 * kMiB, 0};
    cfg.cpus = 4;
    cfg.slots = 8;
    cfg.maxmem = 8 * kGiB;
    cfg.qemu = "/opt/qemu/bin/qemu-system-x86_64";
    auto argv = command(cfg);
    EXPECT_EQ(argv[0], "/opt/qemu/bin/qemu-system-x86_64");
    EXPECT_EQ(value_of(argv, "-m"), "1536M,slots=8,maxmem=8G");
    EXPECT_EQ(value_of(argv, "-smp"), "4");
    EXPECT_THAT(values_of(argv, "-numa"),
                ElementsAre("node,nodeid=0,cpus=0-3,memdev=boot0", "node,nodeid=1,memdev=boot1", "node,nodeid=2"));
    EXPECT_THAT(values_of(argv, "-object"),
                ElementsAre("memory-backend-ram,id=boot0,size=1G", "memory-backend-ram,id=boot1,size=512M"));
}

TEST(QemuCommand, Kvm) {
    GuestConfig cfg;
    cfg.accel = "kvm";
    auto argv = command(cfg);
    EXPECT_EQ(value_of(argv, "-machine"), "q35,accel=kvm");
    EXPECT_EQ(value_of(argv, "-cpu"), "host");
}

TEST(QemuCommand, AgentPortShareAndSockets) {
    auto argv = command(GuestConfig{});
    EXPECT_THAT(values_of(argv, "-device"), Contains("virtserialport,chardev=agent,name=memhp.agent"));
    EXPECT_THAT(values_of(argv, "-device"), Contains("virtio-serial-pci,id=vser0"));
    EXPECT_THAT(values_of(argv, "-chardev"), Contains("socket,id=agent,path=/tmp/run/agent.sock,server=on,wait=off"));
    // Only the share table: the shares themselves come from the plan, and
    // the host's root is never one of them.
    EXPECT_THAT(values_of(argv, "-virtfs"),
                ElementsAre("local,path=/tmp/run/guest-meta,mount_tag=memhpmeta,security_model=none,readonly=on,"
                            "multidevs=remap"));
    EXPECT_THAT(values_of(argv, "-qmp"), Contains("unix:/tmp/run/qmp.sock,server=on,wait=off"));
    EXPECT_EQ(value_of(argv, "-serial"), "chardev:con");
}

TEST(QemuCommand, KernelCommandLine) {
    GuestConfig cfg;
    const std::string append = value_of(command(cfg), "-append");
    EXPECT_THAT(append, HasSubstr("console=ttyS0"));
    EXPECT_THAT(append, HasSubstr("no_timer_check")) << "a busy host's TCG guest fails the IO-APIC timer check";
    EXPECT_THAT(append, HasSubstr("memhp.agent=/src/build/bin/memhp-agent"));
    EXPECT_THAT(append, HasSubstr("memhp.cwd=/src"));
    EXPECT_THAT(append, Not(HasSubstr("memmap_on_memory")));
    EXPECT_EQ(append, kernel_cmdline(cfg, "/src/build/bin/memhp-agent", "/src"));
}

TEST(QemuCommand, MemmapOnMemory) {
    GuestConfig cfg;
    cfg.memmap_on_memory = true;
    EXPECT_THAT(value_of(command(cfg), "-append"), HasSubstr(" memory_hotplug.memmap_on_memory=1"));
    cfg.memmap_on_memory = false;
    const std::string off = value_of(command(cfg), "-append");
    EXPECT_THAT(off, HasSubstr(" memory_hotplug.memmap_on_memory=0"));
    EXPECT_THAT(off, Not(HasSubstr("memmap_on_memory=1")));
}

TEST(QemuCommand, ExtraAppendWordsComeLast) {
    GuestConfig cfg;
    cfg.memmap_on_memory = true;
    cfg.append = {"movable_node", "memhp.debug=1"};
    const std::string c = kernel_cmdline(cfg, "/a", "/w");
    EXPECT_TRUE(c.ends_with(" memory_hotplug.memmap_on_memory=1 movable_node memhp.debug=1")) << c;
}

TEST(QemuCommand, NoNetworkByDefault) {
    const auto argv = command(GuestConfig{});
    EXPECT_TRUE(values_of(argv, "-netdev").empty());
    EXPECT_THAT(value_of(argv, "-append"), Not(HasSubstr("memhp.net")));
}

TEST(QemuCommand, TcpForwardsBindToHostLoopback) {
    GuestConfig cfg;
    cfg.tcp_forwards = {{18080, 10466}, {18081, 22}};
    const auto argv = command(cfg);
    EXPECT_EQ(value_of(argv, "-netdev"),
              "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:18080-:10466,hostfwd=tcp:127.0.0.1:18081-:22");
    EXPECT_THAT(values_of(argv, "-device"), Contains("virtio-net-pci,netdev=net0"));
    EXPECT_THAT(value_of(argv, "-append"), HasSubstr(" memhp.net=1"));
    cfg.tcp_forwards = {{0, 10466}};
    EXPECT_THROW(validate(cfg), UsageError);
}

}  // namespace
}  // namespace memhp::lab

// ---- online mode and virtio-mem devices -------------------------------------------

namespace memhp::lab {
namespace {

TEST(OnlineMode, ParsesBothWordsAndRefusesOthers) {
    EXPECT_EQ(parse_online_mode("auto"), OnlineMode::Auto);
    EXPECT_EQ(parse_online_mode("manual"), OnlineMode::Manual);
    EXPECT_STREQ(online_mode_name(OnlineMode::Auto), "auto");
    EXPECT_STREQ(online_mode_name(OnlineMode::Manual), "manual");
    for (const char* bad : {"", "Auto", "online", "offline", "movable"}) {
        try {
            (void)parse_online_mode(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), HasSubstr("--online must be auto"));
        }
    }
}

TEST(VirtioMem, DeviceAndBackendOnTheCommandLine) {
    GuestConfig cfg;
    cfg.virtio_mem.push_back({1, 4 * kGiB, 0});
    const auto argv = command(cfg);
    const auto objects = values_of(argv, "-object");
    EXPECT_THAT(objects, ::testing::Contains("memory-backend-ram,id=vmemmem0,size=4G,reserve=off"));
    EXPECT_THAT(values_of(argv, "-device"),
                ::testing::Contains("virtio-mem-pci,id=vmem0,memdev=vmemmem0,node=1,requested-size=0"));
    // maxmem leaves room for the device beside the DIMMs: 1G boot + 4G + 16G.
    EXPECT_THAT(value_of(argv, "-m"), HasSubstr("maxmem=21G"));
    EXPECT_EQ(virtio_mem_id(1), "vmem1");
}

TEST(VirtioMem, BlockSizeWhenAsked) {
    GuestConfig cfg;
    cfg.virtio_mem.push_back({1, kGiB, std::uint64_t{128} << 20});
    EXPECT_THAT(values_of(command(cfg), "-device"),
                ::testing::Contains("virtio-mem-pci,id=vmem0,memdev=vmemmem0,node=1,requested-size=0,block-size=128M"));
}

TEST(VirtioMem, NoDeviceNoVirtioMemArguments) {
    for (const auto& a : command(GuestConfig{})) EXPECT_THAT(a, ::testing::Not(HasSubstr("virtio-mem")));
}

TEST(VirtioMem, ValidationSaysWhatIsWrong) {
    auto refuse = [](VirtioMemConfig v, std::uint64_t maxmem, const std::string& why) {
        GuestConfig cfg;
        cfg.virtio_mem.push_back(v);
        cfg.maxmem = maxmem;
        try {
            validate(cfg);
            ADD_FAILURE() << "accepted: " << why;
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), HasSubstr(why));
        }
    };
    refuse({2, kGiB, 0}, 0, "node 2 does not exist");
    refuse({-1, kGiB, 0}, 0, "does not exist");
    refuse({1, 0, 0}, 0, "multiple of 128M");
    refuse({1, std::uint64_t{100} << 20, 0}, 0, "multiple of 128M");
    refuse({1, kGiB, std::uint64_t{3} << 20}, 0, "power of two");
    refuse({1, 4 * kGiB, 0}, 3 * kGiB, "plus the virtio-mem devices");
    GuestConfig ok;
    ok.virtio_mem.push_back({1, kGiB, 0});
    EXPECT_NO_THROW(validate(ok));
}

// The console of the 6.1 boot that hung in CI (cut): 9p loaded, then the RCU
// stall report every 21 s until the boot timeout.
TEST(TransientBootFailure, AStallOnTheConsoleIsWorthAnotherBoot) {
    const std::string stalled =
        "[    3.689941] 9p: Installing v9fs 9p2000 file system support\n"
        "[   23.062100] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n"
        "[   23.062150] rcu: rcu_sched kthread timer wakeup didn't happen for 5251 jiffies! g-1171 f0x0\n"
        "[   23.062204] NMI backtrace for cpu 0 skipped: idling at native_safe_halt+0xb/0x10\n";
    EXPECT_EQ(transient_boot_failure(stalled, true), BootRetry::Stall);
    EXPECT_EQ(transient_boot_failure(stalled, false), BootRetry::Stall);
    EXPECT_EQ(transient_boot_failure("[ 1.0] rcu: rcu_preempt kthread starved for 10003 jiffies!\n", true),
              BootRetry::Stall);
}

TEST(TransientBootFailure, AnOopsOnlyOnceQemuIsGone) {
    const std::string oops =
        "[ 2.1] RIP: 0010:sched_clock_cpu+0x9/0x50\n[ 2.2] Kernel panic - not syncing: Fatal exception\n";
    EXPECT_EQ(transient_boot_failure(oops, false), BootRetry::Oops);
    EXPECT_EQ(transient_boot_failure(oops, true), BootRetry::None) << "QEMU still runs: not over yet";
}

TEST(TransientBootFailure, OtherFailuresAreReportedAtOnce) {
    EXPECT_EQ(transient_boot_failure("[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n", false),
              BootRetry::None);
    EXPECT_EQ(transient_boot_failure("[ 1.0] Run /bin/busybox as init process\n", true), BootRetry::None);
    EXPECT_EQ(transient_boot_failure("", false), BootRetry::None);
    EXPECT_EQ(transient_boot_failure("memhp-init: FATAL: cannot mount the host root over 9p\n", false),
              BootRetry::None);
}

TEST(QemuCommand, ExportsEachPlannedShareReadOnly) {
    SharePlan plan;
    plan.shares = {{"memhp0", "/usr", "/usr"},
                   {"memhp1", "/tmp/run/guest-etc", "/etc"},
                   {"memhp2", "/home/a,b/build/bin", "/home/a,b/build/bin"}};
    const auto virtfs = values_of(command(GuestConfig{}, plan), "-virtfs");
    ASSERT_EQ(virtfs.size(), 4u);
    EXPECT_THAT(virtfs[1], StartsWith("local,path=/usr,mount_tag=memhp0,"));
    EXPECT_THAT(virtfs[2], StartsWith("local,path=/tmp/run/guest-etc,mount_tag=memhp1,"));
    EXPECT_THAT(virtfs[3], StartsWith("local,path=/home/a,,b/build/bin,mount_tag=memhp2,")) << "QEMU's comma escape";
    for (const auto& v : virtfs) {
        EXPECT_THAT(v, HasSubstr(",readonly=on"));
        EXPECT_THAT(v, Not(HasSubstr("path=/,")));
    }
}

}  // namespace
}  // namespace memhp::lab
