// SPDX-License-Identifier: Apache-2.0
#include "memhp/process.hpp"

#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace memhp {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool process_gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

TEST(Run, CapturesStdoutStderrAndExitCode) {
    auto r = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.out, "out\n");
    EXPECT_EQ(r.err, "err\n");
    EXPECT_TRUE(run({"true"}).ok());
}

TEST(Run, KilledBySignalIs128PlusSignal) { EXPECT_EQ(run({"sh", "-c", "kill -9 $$"}).exit_code, 128 + SIGKILL); }

TEST(Run, FeedsStdin) {
    RunOptions o;
    o.stdin_data = "hello\nworld";
    EXPECT_EQ(run({"cat"}, o).out, "hello\nworld");
}

TEST(Run, FeedsStdinLargerThanAPipe) {
    RunOptions o;
    std::string big;
    for (int i = 0; big.size() < (1u << 20); ++i) big += std::to_string(i) + "\n";
    o.stdin_data = big;
    auto r = run({"cat"}, o);
    EXPECT_EQ(r.out.size(), big.size());
    EXPECT_TRUE(r.out == big);
}

TEST(Run, NoStdinMeansEof) {
    auto r = run({"sh", "-c", "cat; echo done"}, {.timeout = 5s});
    EXPECT_EQ(r.out, "done\n");
}

TEST(Run, CwdAndEnv) {
    TempDir dir;
    RunOptions o;
    o.cwd = dir.path();
    o.env = {"MEMHP_UNIT_VAR=forty two"};
    auto r = run({"sh", "-c", "pwd -P; echo \"$MEMHP_UNIT_VAR\""}, o);
    EXPECT_EQ(r.out, fs::canonical(dir.path()).string() + "\nforty two\n");
}

TEST(Run, TimesOutQuicklyAndKills) {
    const auto t0 = Clock::now();
    try {
        (void)run({"sleep", "5"}, {.timeout = 200ms});
        FAIL() << "no timeout";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("sleep 5"));
        EXPECT_THAT(e.what(), HasSubstr("killed"));
    }
    EXPECT_LT(Clock::now() - t0, 2s);
}

TEST(Run, TimeoutKillsTheWholeGroup) {
    // A grandchild holding stdout open must not keep run() waiting.
    const auto t0 = Clock::now();
    EXPECT_THROW((void)run({"sh", "-c", "sleep 5 & sleep 5; wait"}, {.timeout = 200ms}), Error);
    EXPECT_LT(Clock::now() - t0, 2s);
}

TEST(Run, MissingProgramNamesIt) {
    try {
        (void)run({"memhp-no-such-program-xyz", "--flag"});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("memhp-no-such-program-xyz"));
    }
    EXPECT_THROW((void)run({}), Error);
}

TEST(Run, BadCwdThrows) {
    RunOptions o;
    o.cwd = "/nonexistent/memhp-unit";
    EXPECT_THROW((void)run({"true"}, o), Error);
}

TEST(RunChecked, ReturnsStdoutOnSuccess) { EXPECT_EQ(run_checked({"echo", "hi"}), "hi\n"); }

TEST(RunChecked, ThrowsWithExitCodeAndStderrTail) {
    try {
        (void)run_checked({"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i >&2; done; exit 4"});
        FAIL() << "no error";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_THAT(what, HasSubstr("exit code 4"));
        EXPECT_THAT(what, HasSubstr("line10"));
        EXPECT_THAT(what, HasSubstr("line3"));
        EXPECT_THAT(what, ::testing::Not(HasSubstr("line2\n")));  // only the last 8 lines
    }
}

TEST(RunChecked, FallsBackToStdoutWhenStderrIsEmpty) {
    try {
        (void)run_checked({"sh", "-c", "echo 'why it failed'; exit 1"});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("why it failed"));
    }
}

TEST(FindProgram, PathAndAbsolute) {
    auto sh = find_program("sh");
    ASSERT_TRUE(sh);
    EXPECT_TRUE(sh->is_absolute());
    EXPECT_EQ(find_program("memhp-no-such-program-xyz"), std::nullopt);
    EXPECT_EQ(find_program("/bin/sh"), std::filesystem::path("/bin/sh"));
    EXPECT_EQ(find_program("/nonexistent/sh"), std::nullopt);
}

TEST(ShellJoin, QuotesOnlyWhatNeedsIt) {
    EXPECT_EQ(shell_join({"qemu", "-m", "1G,slots=4"}), "qemu -m 1G,slots=4");
    EXPECT_EQ(shell_join({"sh", "-c", "echo hi"}), "sh -c 'echo hi'");
    EXPECT_EQ(shell_join({"a b", "it's", ""}), "'a b' 'it'\\''s' ''");
}

TEST(ChildProcess, OutputGoesToTheFileAndExitIsRecorded) {
    TempDir dir;
    auto child = ChildProcess::spawn({"sh", "-c", "echo to-out; echo to-err >&2; exit 5"}, dir.path() / "log");
    ASSERT_TRUE(child.wait_for(5s));
    EXPECT_FALSE(child.running());
    EXPECT_EQ(child.exit_code(), 5);
    EXPECT_EQ(read_file(dir.path() / "log"), "to-out\nto-err\n");
}

TEST(ChildProcess, TerminateLeavesNoProcess) {
    TempDir dir;
    auto child = ChildProcess::spawn({"sleep", "30"}, dir.path() / "log");
    const pid_t pid = child.pid();
    ASSERT_GT(pid, 0);
    EXPECT_TRUE(child.running());
    EXPECT_FALSE(child.wait_for(50ms));
    child.terminate(2s);
    EXPECT_TRUE(process_gone(pid));
    EXPECT_EQ(child.exit_code(), 128 + SIGTERM);
    EXPECT_FALSE(child.running());
}

TEST(ChildProcess, TerminateEscalatesToSigkill) {
    TempDir dir;
    const auto log = dir.path() / "log";
    auto child = ChildProcess::spawn({"sh", "-c", "trap '' TERM; echo ready; exec sleep 30"}, log);
    const pid_t pid = child.pid();
    const auto deadline = Clock::now() + 5s;
    while (try_read_file(log).value_or("").find("ready") == std::string::npos && Clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    ASSERT_THAT(read_file(log), HasSubstr("ready"));
    const auto t0 = Clock::now();
    child.terminate(200ms);
    EXPECT_LT(Clock::now() - t0, 2s);
    EXPECT_TRUE(process_gone(pid));
    EXPECT_EQ(child.exit_code(), 128 + SIGKILL);
}

TEST(ChildProcess, DestructorKills) {
    TempDir dir;
    pid_t pid = -1;
    {
        auto child = ChildProcess::spawn({"sleep", "30"}, dir.path() / "log");
        pid = child.pid();
        ASSERT_FALSE(process_gone(pid));
    }
    EXPECT_TRUE(process_gone(pid));
}

TEST(ChildProcess, MoveAssignmentKillsTheOldChild) {
    TempDir dir;
    auto a = ChildProcess::spawn({"sleep", "30"}, dir.path() / "log");
    const pid_t old_pid = a.pid();
    a = ChildProcess::spawn({"sleep", "30"}, dir.path() / "log");
    EXPECT_TRUE(process_gone(old_pid));
    EXPECT_NE(a.pid(), old_pid);
    const pid_t new_pid = a.pid();
    a.terminate(1s);
    EXPECT_TRUE(process_gone(new_pid));
}

TEST(ChildProcess, SpawnOfAMissingBinaryThrows) {
    TempDir dir;
    try {
        (void)ChildProcess::spawn({"memhp-no-such-program-xyz"}, dir.path() / "log");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("memhp-no-such-program-xyz"));
    }
    EXPECT_THROW((void)ChildProcess::spawn({"/nonexistent/qemu"}, dir.path() / "log"), Error);
    EXPECT_THROW((void)ChildProcess::spawn({}, dir.path() / "log"), Error);
}

TEST(ChildProcess, SpawnWithAnUnwritableLogThrows) {
    EXPECT_THROW((void)ChildProcess::spawn({"true"}, "/nonexistent/dir/log"), Error);
}

}  // namespace
}  // namespace memhp
