// SPDX-License-Identifier: Apache-2.0
#pragma once
// Child processes: run-and-capture for tools (apt-get, dpkg-deb, cpio), and a
// RAII owner for long-lived children (QEMU) that never leaves an orphan.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace memhp {

struct RunResult {
    int exit_code = -1;  // exit status, or 128+signal when killed
    std::string out;
    std::string err;
    [[nodiscard]] bool ok() const { return exit_code == 0; }
};

struct RunOptions {
    std::chrono::milliseconds timeout{std::chrono::minutes(10)};
    std::filesystem::path cwd;
    std::optional<std::string> stdin_data;
    // Extra environment entries "NAME=value" added to the inherited ones.
    std::vector<std::string> env;
};

// Runs argv[0] (looked up in PATH) and waits; throws Error if it cannot be
// started, times out (the process group is killed) or the run is interrupted.
[[nodiscard]] RunResult run(const std::vector<std::string>& argv, const RunOptions& opts = {});

// Like run(), but throws Error with the command's stderr tail when it fails.
std::string run_checked(const std::vector<std::string>& argv, const RunOptions& opts = {});

// Full path of `name` in PATH (plus /usr/sbin and /sbin), or nullopt.
[[nodiscard]] std::optional<std::filesystem::path> find_program(const std::string& name);

// Shell-quoted command line, for messages a person may paste.
[[nodiscard]] std::string shell_join(const std::vector<std::string>& argv);

// A child in its own process group that dies with us (PR_SET_PDEATHSIG) and
// is killed (SIGTERM, then SIGKILL) when the owner goes away.
class ChildProcess {
public:
    ChildProcess() = default;
    // stdout and stderr go to `output_file` (appended); stdin is /dev/null.
    static ChildProcess spawn(const std::vector<std::string>& argv, const std::filesystem::path& output_file);
    ~ChildProcess();
    ChildProcess(ChildProcess&& other) noexcept;
    ChildProcess& operator=(ChildProcess&& other) noexcept;
    ChildProcess(const ChildProcess&) = delete;
    ChildProcess& operator=(const ChildProcess&) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    // True while the child runs; reaps it (and records its status) once it exits.
    [[nodiscard]] bool running();
    // Exit status as in RunResult::exit_code, once it has exited.
    [[nodiscard]] std::optional<int> exit_code() const { return status_; }
    // Waits up to `timeout` for exit; true if it exited.
    bool wait_for(std::chrono::milliseconds timeout);
    // SIGTERM, wait up to `grace`, then SIGKILL the whole group and reap.
    void terminate(std::chrono::milliseconds grace = std::chrono::seconds(3));
    // Forget the child without killing it.
    void detach() { pid_ = -1; }

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
};

}  // namespace memhp
