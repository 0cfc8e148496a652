// SPDX-License-Identifier: Apache-2.0
#include "memhp/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <thread>

#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/stop.hpp"

namespace memhp {
namespace {

using Clock = std::chrono::steady_clock;

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

std::vector<char*> to_cargv(const std::vector<std::string>& argv) {
    std::vector<char*> out;
    out.reserve(argv.size() + 1);
    for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
    out.push_back(nullptr);
    return out;
}

// In the child after fork: die with the parent, own process group.
void child_common_setup(pid_t parent) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::sigaction(sig, &sa, nullptr);
}

[[noreturn]] void exec_or_die(const std::vector<std::string>& argv, int err_fd) {
    auto cargv = to_cargv(argv);
    ::execvp(cargv[0], cargv.data());
    int err = errno;
    // Report the exec failure through the close-on-exec pipe.
    (void)!::write(err_fd, &err, sizeof err);
    ::_exit(127);
}

void kill_group(pid_t pid, int sig) {
    if (pid <= 0) return;
    if (::kill(-pid, sig) != 0) ::kill(pid, sig);
}

}  // namespace

std::optional<std::filesystem::path> find_program(const std::string& name) {
    if (name.find('/') != std::string::npos) {
        if (::access(name.c_str(), X_OK) == 0) return std::filesystem::path(name);
        return std::nullopt;
    }
    std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
    path += ":/usr/sbin:/sbin";
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
        if (dir.empty()) continue;
        auto candidate = std::filesystem::path(dir) / name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return std::nullopt;
}

std::string shell_join(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& a : argv) {
        if (!out.empty()) out += ' ';
        bool plain = !a.empty() &&
                     a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") ==
                         std::string::npos;
        if (plain) {
            out += a;
        } else {
            out += '\'';
            for (char c : a) {
                if (c == '\'')
                    out += "'\\''";
                else
                    out += c;
            }
            out += '\'';
        }
    }
    return out;
}

namespace {

// A child started by run(): its pid and the parent's ends of its pipes.
struct PipedChild {
    pid_t pid = -1;
    int in = -1, out = -1, err = -1;
};

// Forks and execs `program` with argv[1..] and stdin, stdout and stderr on
// pipes; throws when the child cannot chdir or exec (reported through a
// close-on-exec pipe, so a missing program is an error, not exit code 127).
PipedChild spawn_piped(const std::filesystem::path& program, const std::vector<std::string>& argv,
                       const RunOptions& opts) {
    int out_pipe[2], err_pipe[2], in_pipe[2], exec_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC) || ::pipe2(in_pipe, O_CLOEXEC) ||
        ::pipe2(exec_pipe, O_CLOEXEC))
        throw_errno("pipe", errno);

    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork", errno);
    if (pid == 0) {
        child_common_setup(parent);
        ::dup2(in_pipe[0], 0);
        ::dup2(out_pipe[1], 1);
        ::dup2(err_pipe[1], 2);
        if (!opts.cwd.empty() && ::chdir(opts.cwd.c_str()) != 0) {
            int err = errno;
            (void)!::write(exec_pipe[1], &err, sizeof err);
            ::_exit(127);
        }
        for (const auto& e : opts.env) ::putenv(const_cast<char*>(e.c_str()));
        std::vector<std::string> args = argv;
        args[0] = program.string();
        exec_or_die(args, exec_pipe[1]);
    }
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    ::close(in_pipe[0]);
    ::close(exec_pipe[1]);

    int exec_err = 0;
    if (::read(exec_pipe[0], &exec_err, sizeof exec_err) == static_cast<ssize_t>(sizeof exec_err)) {
        for (int fd : {exec_pipe[0], out_pipe[0], err_pipe[0], in_pipe[1]}) ::close(fd);
        ::waitpid(pid, nullptr, 0);
        throw Error(errno_text("cannot run " + shell_join(argv), exec_err));
    }
    ::close(exec_pipe[0]);
    return {pid, in_pipe[1], out_pipe[0], err_pipe[0]};
}

enum class PumpEnd { Done, TimedOut, Interrupted };

// Feeds `input` to the child's stdin and collects its stdout and stderr
// until both close, the deadline passes or a stop is requested. Closes
// every pipe end it was given.
PumpEnd pump(PipedChild& c, const std::string& input, Clock::time_point deadline, RunResult& result) {
    std::size_t in_off = 0;
    if (input.empty()) {
        ::close(c.in);
        c.in = -1;
    } else {
        ::fcntl(c.in, F_SETFL, O_NONBLOCK);
    }
    PumpEnd end = PumpEnd::Done;
    while (c.out >= 0 || c.err >= 0 || c.in >= 0) {
        pollfd pfds[3];
        int n = 0;
        if (c.out >= 0) pfds[n++] = {c.out, POLLIN, 0};
        if (c.err >= 0) pfds[n++] = {c.err, POLLIN, 0};
        if (c.in >= 0) pfds[n++] = {c.in, POLLOUT, 0};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            end = PumpEnd::TimedOut;
            break;
        }
        int r = ::poll(pfds, n, static_cast<int>(std::min<long long>(left, 200)));
        if (stop_requested()) {
            end = PumpEnd::Interrupted;
            break;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < n; ++i) {
            if (!pfds[i].revents) continue;
            int fd = pfds[i].fd;
            if (fd == c.in) {
                ssize_t w = ::write(c.in, input.data() + in_off, input.size() - in_off);
                if (w > 0) in_off += static_cast<std::size_t>(w);
                if (w < 0 || in_off >= input.size()) {
                    ::close(c.in);
                    c.in = -1;
                }
                continue;
            }
            char buf[65536];
            ssize_t got = ::read(fd, buf, sizeof buf);
            if (got > 0) {
                (fd == c.out ? result.out : result.err).append(buf, static_cast<std::size_t>(got));
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                ::close(fd);
                (fd == c.out ? c.out : c.err) = -1;
            }
        }
    }
    for (int fd : {c.out, c.err, c.in})
        if (fd >= 0) ::close(fd);
    c.out = c.err = c.in = -1;
    return end;
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, const RunOptions& opts) {
    if (argv.empty()) throw Error("run: empty command");
    ignore_sigpipe();
    auto program = find_program(argv[0]);
    if (!program) throw Error("'" + argv[0] + "' is not installed or not in PATH (run scripts/install-deps.sh)");

    PipedChild child = spawn_piped(*program, argv, opts);
    RunResult result;
    const PumpEnd end = pump(child, opts.stdin_data.value_or(""), Clock::now() + opts.timeout, result);
    if (end != PumpEnd::Done) kill_group(child.pid, SIGKILL);
    int status = 0;
    while (::waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {}
    if (end == PumpEnd::Interrupted) throw Interrupted();
    if (end == PumpEnd::TimedOut)
        throw Error("'" + shell_join(argv) + "' did not finish within " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(opts.timeout).count()) +
                    " s and was killed");
    result.exit_code = decode_status(status);
    return result;
}

std::string run_checked(const std::vector<std::string>& argv, const RunOptions& opts) {
    auto r = run(argv, opts);
    if (!r.ok()) {
        std::string tail = last_lines(r.err.empty() ? r.out : r.err, 8);
        throw Error("'" + shell_join(argv) + "' failed with exit code " + std::to_string(r.exit_code) +
                    (tail.empty() ? "" : ":\n" + tail));
    }
    return std::move(r.out);
}

ChildProcess ChildProcess::spawn(const std::vector<std::string>& argv, const std::filesystem::path& output_file) {
    if (argv.empty()) throw Error("spawn: empty command");
    auto program = find_program(argv[0]);
    if (!program) throw Error("'" + argv[0] + "' is not installed or not in PATH (run scripts/install-deps.sh)");
    int out = ::open(output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) throw_errno("cannot open " + output_file.string(), errno);
    int exec_pipe[2];
    if (::pipe2(exec_pipe, O_CLOEXEC)) throw_errno("pipe", errno);
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw_errno("fork", errno);
    if (pid == 0) {
        child_common_setup(parent);
        int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        ::dup2(out, 1);
        ::dup2(out, 2);
        std::vector<std::string> args = argv;
        args[0] = program->string();
        exec_or_die(args, exec_pipe[1]);
    }
    ::close(out);
    ::close(exec_pipe[1]);
    int exec_err = 0;
    ssize_t got = ::read(exec_pipe[0], &exec_err, sizeof exec_err);
    ::close(exec_pipe[0]);
    if (got == static_cast<ssize_t>(sizeof exec_err)) {
        ::waitpid(pid, nullptr, 0);
        throw Error(errno_text("cannot run " + argv[0], exec_err));
    }
    ChildProcess child;
    child.pid_ = pid;
    return child;
}

ChildProcess::~ChildProcess() {
    if (pid_ > 0) terminate(std::chrono::milliseconds(1500));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept : pid_(other.pid_), status_(other.status_) {
    other.pid_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
    if (this != &other) {
        if (pid_ > 0) terminate(std::chrono::milliseconds(1500));
        pid_ = other.pid_;
        status_ = other.status_;
        other.pid_ = -1;
    }
    return *this;
}

bool ChildProcess::running() {
    if (pid_ <= 0) return false;
    if (status_) return false;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        status_ = decode_status(status);
        return false;
    }
    return r == 0;
}

bool ChildProcess::wait_for(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (running()) {
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

void ChildProcess::terminate(std::chrono::milliseconds grace) {
    if (pid_ <= 0) return;
    if (running()) {
        kill_group(pid_, SIGTERM);
        if (!wait_for(grace)) {
            kill_group(pid_, SIGKILL);
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
            status_ = decode_status(status);
        }
    }
    pid_ = -1;
}

}  // namespace memhp
