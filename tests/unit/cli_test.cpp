// SPDX-License-Identifier: Apache-2.0
// The memhp binary's handling of bad input: exit code 2 and a message that
// says what is wrong, before anything boots.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "memhp/process.hpp"

namespace {

std::string memhp_bin() { return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

memhp::RunResult memhp_run(std::vector<std::string> args) {
    args.insert(args.begin(), memhp_bin());
    return memhp::run(args, {.timeout = std::chrono::seconds(20)});
}

TEST(Cli, UnknownFlagExitsTwo) {
    auto r = memhp_run({"lab", "--bogus"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r.err;
}

TEST(Cli, NoCommandExitsTwo) {
    auto r = memhp_run({});
    EXPECT_EQ(r.exit_code, 2);
}

TEST(Cli, DimmNotAMultipleOfTheBlockSizeIsRejectedBeforeBoot) {
    auto r = memhp_run({"lab", "--dimm", "100M", "--qemu", "/nonexistent"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("not a multiple"), std::string::npos) << r.err;
}

TEST(Cli, NodeThatDoesNotExistIsRejected) {
    auto r = memhp_run({"lab", "--node", "3", "--node-mem", "1G,0"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("--node 3 does not exist"), std::string::npos) << r.err;
}

TEST(Cli, MemorylessNodeZeroIsRejected) {
    auto r = memhp_run({"lab", "--node-mem", "0,1G"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("node 0 needs memory"), std::string::npos) << r.err;
}

TEST(Cli, GarbageKernelSpecIsRejected) {
    auto r = memhp_run({"lab", "--kernel", "banana"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("unknown kernel 'banana'"), std::string::npos) << r.err;
}

TEST(Cli, MissingQemuIsAClearRuntimeError) {
    auto r = memhp_run({"lab", "--qemu", "/nonexistent/qemu", "--kernel", "6.1"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("QEMU binary '/nonexistent/qemu' not found"), std::string::npos) << r.err;
}

// Without root (as nobody, via util-linux's setpriv when the tests run as
// root), trace refuses with the remedy before touching BPF.
TEST(Cli, TraceAsNonRootNamesRootOrTheCapabilities) {
    std::vector<std::string> argv;
    if (::geteuid() == 0)
        argv = {"setpriv",        "--reuid=65534",   "--regid=65534",
                "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"};
    argv.push_back(memhp_bin());
    for (const char* a : {"trace", "--duration", "1"}) argv.emplace_back(a);
    auto r = memhp::run(argv, {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("needs root"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("CAP_BPF and CAP_PERFMON"), std::string::npos) << r.err;
}

TEST(Cli, TraceRejectsAnUnknownAttachMode) {
    auto r = memhp_run({"trace", "--attach-mode", "uprobe"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("--attach-mode"), std::string::npos) << r.err;
}

TEST(Cli, TraceHelpExplainsEveryFlag) {
    auto r = memhp_run({"trace", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    for (const char* flag : {"--json", "--duration", "--attach-mode", "--verbose"})
        EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

TEST(Cli, HelpExplainsEveryLabFlag) {
    auto r = memhp_run({"lab", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    for (const char* flag :
         {"--kernel", "--memmap-on-memory", "--dimm", "--node", "--cycles", "--zone", "--keep", "--json", "--node-mem",
          "--accel", "--boot-timeout", "--qemu", "--append", "--timeout", "--online", "--virtio-mem"})
        EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

}  // namespace

namespace {

TEST(Cli, VirtioMemSizeNotAMultipleOfTheBlockIsRejectedBeforeBoot) {
    auto r = memhp_run({"lab", "--virtio-mem", "100M", "--qemu", "/nonexistent"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("multiple of 128M"), std::string::npos) << r.err;
}

TEST(Cli, VirtioMemOnANodeThatDoesNotExistIsRejected) {
    auto r = memhp_run({"lab", "--virtio-mem", "512M", "--node", "0", "--node-mem", "1G", "--qemu", "/nonexistent"});
    // node 0 exists: only QEMU is missing, a runtime error, not a usage one.
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("QEMU binary"), std::string::npos) << r.err;
}

TEST(Cli, OnlineTakesOnlyAutoOrManual) {
    auto r = memhp_run({"lab", "--online", "sometimes"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("--online"), std::string::npos) << r.err;
    auto ab = memhp_run({"ab", "--arm", "a:online=sometimes", "--arm", "b", "--qemu", "/nonexistent"});
    EXPECT_EQ(ab.exit_code, 2);
    EXPECT_NE(ab.err.find("--online must be auto"), std::string::npos) << ab.err;
}

}  // namespace
