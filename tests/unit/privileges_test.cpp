// SPDX-License-Identifier: Apache-2.0
// The capability drop memhp trace and memhp-exporter do after attaching: run
// in a forked child (the test runner keeps its own set), which reports its
// /proc/self/status afterwards. As root (CI) the sets start full, so the test
// shows they end empty; as a user it still checks NoNewPrivs and the guard.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "memhp/collector/privileges.hpp"
#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace {

std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    return out;
}

// Runs fn in a child and returns what it wrote to the pipe.
template <typename Fn>
std::string in_child(Fn&& fn) {
    int p[2];
    EXPECT_EQ(::pipe(p), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        std::string out;
        try {
            out = fn();
        } catch (const std::exception& e) {
            out = std::string("threw: ") + e.what();
        }
        const ssize_t n = ::write(p[1], out.data(), out.size());
        ::_exit(n == static_cast<ssize_t>(out.size()) ? 0 : 1);
    }
    ::close(p[1]);
    std::string out = read_all(p[0]);
    ::close(p[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return out;
}

std::string field(const std::string& status, const std::string& key) {
    const auto at = status.find("\n" + key + ":");
    if (at == std::string::npos) return "(missing)";
    const auto start = at + key.size() + 2;
    return memhp::trim(status.substr(start, status.find('\n', start) - start));
}

TEST(Privileges, DropLeavesEveryCapabilitySetEmpty) {
    const std::string status = in_child([] {
        const auto drop = memhp::collector::drop_all_capabilities();
        return "\nbounding_cleared:" + std::to_string(drop.bounding_cleared) + "\n" +
               memhp::read_file("/proc/self/status");
    });
    ASSERT_EQ(status.find("threw"), std::string::npos) << status;
    EXPECT_EQ(field(status, "CapEff"), "0000000000000000") << status;
    EXPECT_EQ(field(status, "CapPrm"), "0000000000000000") << status;
    EXPECT_EQ(field(status, "CapInh"), "0000000000000000") << status;
    EXPECT_EQ(field(status, "CapAmb"), "0000000000000000") << status;
    EXPECT_EQ(field(status, "NoNewPrivs"), "1") << status;
    // Whoever could clear the bounding set (root) has it empty too.
    if (field(status, "bounding_cleared") == "1") {
        EXPECT_EQ(field(status, "CapBnd"), "0000000000000000") << status;
    }
}

TEST(Privileges, RootRegainsNothingAtExec) {
    // After the drop, an exec of a program as uid 0 would normally get a full
    // set back; SECBIT_NOROOT (locked) prevents it. (As a user the exec gets
    // nothing anyway; CI runs the tier as root, where this shows something.)
    const std::string status = in_child([] {
        (void)memhp::collector::drop_all_capabilities();
        int p[2];
        if (::pipe(p) != 0) return std::string("pipe failed");
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::dup2(p[1], 1);
            ::execl("/bin/cat", "cat", "/proc/self/status", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(p[1]);
        const std::string out = read_all(p[0]);
        ::waitpid(pid, nullptr, 0);
        return "\n" + out;
    });
    EXPECT_EQ(field(status, "CapEff"), "0000000000000000") << status;
    EXPECT_EQ(field(status, "CapPrm"), "0000000000000000") << status;
}

TEST(Privileges, RefusesWhileAnotherThreadRuns) {
    const std::string out = in_child([] {
        std::atomic<bool> stop{false};
        std::thread t([&] {
            while (!stop) ::usleep(1000);
        });
        std::string r;
        try {
            (void)memhp::collector::drop_all_capabilities();
            r = "dropped";
        } catch (const memhp::Error& e) {
            r = e.what();
        }
        stop = true;
        t.join();
        return r;
    });
    EXPECT_NE(out.find("the process has 2 threads"), std::string::npos) << out;
}

}  // namespace
