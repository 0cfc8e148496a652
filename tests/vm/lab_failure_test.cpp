// SPDX-License-Identifier: Apache-2.0
// What the lab does when things go wrong: each error names the problem and
// what to do, and no QEMU survives it.
#include <dirent.h>
#include <signal.h>

#include <filesystem>
#include <regex>

#include "memhp/files.hpp"
#include "memhp/lab/kernel_cache.hpp"
#include "vm_support.hpp"

namespace memhp::vmtest {
namespace {

namespace fs = std::filesystem;

// PIDs of processes whose command line mentions `needle`.
std::vector<int> processes_mentioning(const std::string& needle) {
    std::vector<int> pids;
    for (const auto& ent : fs::directory_iterator("/proc")) {
        const auto name = ent.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        auto cmd = try_read_file(ent.path() / "cmdline");
        if (cmd && cmd->find(needle) != std::string::npos) pids.push_back(std::stoi(name));
    }
    return pids;
}

// The run directory named in an error message ("(/tmp/memhp-lab.XXXXXX/console.log)").
std::string run_dir_in(const std::string& message) {
    std::smatch m;
    static const std::regex re(R"((/[^\s()]*memhp-lab\.[A-Za-z0-9]+)/console\.log)");
    return std::regex_search(message, m, re) ? m[1].str() : std::string();
}

TEST(LabFailure, GuestThatNeverBecomesReadyTimesOutAndLeavesNoQemu) {
    auto cfg = config("6.1", std::nullopt);
    cfg.append = {"rdinit=/bin/busybox", "--", "sleep", "3600"};  // an init that never starts the agent
    // Long enough that a loaded 2-core CI machine reaches init before it fires.
    cfg.boot_timeout = std::chrono::seconds(60);
    try {
        auto g = boot(cfg);
        FAIL() << "boot succeeded with a bogus init";
    } catch (const lab::GuestError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("did not become ready within 60 s"), std::string::npos) << msg;
        EXPECT_NE(msg.find("last console lines"), std::string::npos) << msg;
        EXPECT_NE(msg.find("Run /bin/busybox as init process"), std::string::npos)
            << "console tail is from the guest:\n"
            << msg;
        const auto dir = run_dir_in(msg);
        ASSERT_FALSE(dir.empty()) << msg;
        EXPECT_FALSE(fs::exists(dir)) << "sockets and logs removed";
        EXPECT_TRUE(processes_mentioning(dir).empty()) << "QEMU is gone";
    }
}

TEST(LabFailure, KernelPanicIsReportedWithConsoleLines) {
    auto cfg = config("6.1", std::nullopt);
    cfg.append = {"rdinit=/does/not/exist"};
    cfg.boot_timeout = std::chrono::seconds(120);
    try {
        auto g = boot(cfg);
        FAIL() << "boot succeeded without an init";
    } catch (const lab::GuestError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("panicked"), std::string::npos) << msg;
        EXPECT_NE(msg.find("Kernel panic"), std::string::npos) << msg;
        // The panic's reason is in the headline, not lost above the quoted stack dump.
        EXPECT_NE(msg.substr(0, msg.find('\n')).find("the guest kernel panicked (VFS: Unable to mount root fs"),
                  std::string::npos)
            << msg;
        EXPECT_TRUE(processes_mentioning(run_dir_in(msg)).empty());
    }
}

TEST(LabFailure, MissingQemuBinaryIsAClearError) {
    auto cfg = config("6.1", std::nullopt);
    cfg.qemu = "/nonexistent/qemu-system-x86_64";
    try {
        auto g = boot(cfg);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("QEMU binary '/nonexistent/qemu-system-x86_64' not found"),
                  std::string::npos)
            << e.what();
    }
}

TEST(LabFailure, UnknownKernelPackageIsAClearError) {
    lab::KernelCache cache(cache_dir() / "kernels");
    try {
        (void)cache.ensure("linux-image-0.0.0-99-amd64");
        FAIL();
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("linux-image-0.0.0-99-amd64 is in none of Debian bullseye, bookworm, trixie and sid"),
                  std::string::npos)
            << msg;
        for (const char* current : {"5.10 = linux-image-5.10.", "6.1 = linux-image-6.1.0-", "6.12 = linux-image-6.12.",
                                    "7.2 = linux-image-7.2."})
            EXPECT_NE(msg.find(current), std::string::npos) << "suggests each suite's current kernel: " << msg;
    }
    EXPECT_FALSE(fs::exists(cache.entry_dir("linux-image-0.0.0-99-amd64"))) << "no half-made cache entry";
}

// QEMU killed under the lab's feet: the next request fails with a GuestError
// that says QEMU exited, instead of hanging.
TEST(LabFailure, QemuKilledMidRunIsDetected) {
    auto g = boot(config("6.1", std::nullopt));
    lab::MemoryLab mem(*g);
    ::kill(g->qemu_pid(), SIGKILL);
    auto rec = lab::run_cycle(mem, {128 * kMiB, 1, lab::Zone::Movable}, 1);
    EXPECT_FALSE(rec.ok());
    EXPECT_TRUE(rec.guest_lost);
    ASSERT_FALSE(rec.phases.empty());
    EXPECT_NE(rec.phases.back().error.find("QEMU exited"), std::string::npos) << rec.phases.back().error;
}

}  // namespace
}  // namespace memhp::vmtest
