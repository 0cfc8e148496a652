// memhp-agent: runs inside the lab guest (chrooted into the host's root over
// 9p) and serves the host's requests over a virtio-serial port. See
// memhp/lab/agent_protocol.hpp for the protocol. Single-threaded: the host
// sends one request at a time.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "memhp/files.hpp"
#include "memhp/lab/agent_protocol.hpp"
#include "memhp/line_channel.hpp"

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string g_cwd = "/";
std::set<pid_t> g_spawned;

double uptime_s() {
    auto text = memhp::try_read_file("/proc/uptime");
    return text ? std::atof(text->c_str()) : 0.0;
}

json fail(const std::string& what, int err = 0) {
    json r{{"ok", false}, {"error", err ? memhp::errno_text(what, err) : what}};
    if (err) r["errno"] = err;
    return r;
}

std::vector<char*> cargv(const std::vector<std::string>& argv) {
    std::vector<char*> v;
    for (const auto& a : argv) v.push_back(const_cast<char*>(a.c_str()));
    v.push_back(nullptr);
    return v;
}

int decode(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

// fork + exec with stdin from /dev/null, in its own process group.
pid_t start(const std::vector<std::string>& argv, int out_fd, int err_fd) {
    pid_t pid = ::fork();
    if (pid != 0) return pid;
    ::setpgid(0, 0);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    if (::chdir(g_cwd.c_str()) != 0) (void)!::chdir("/");
    auto v = cargv(argv);
    ::execvp(v[0], v.data());
    std::fprintf(stderr, "memhp-agent: cannot run %s: %s\n", v[0], std::strerror(errno));
    ::_exit(127);
}

json op_exec(const json& req) {
    auto argv = req.at("argv").get<std::vector<std::string>>();
    if (argv.empty()) return fail("exec: empty argv");
    auto timeout = std::chrono::milliseconds(req.value("timeout_ms", 60000));
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) return fail("pipe", errno);
    pid_t pid = start(argv, out[1], err[1]);
    ::close(out[1]);
    ::close(err[1]);
    if (pid < 0) {
        ::close(out[0]);
        ::close(err[0]);
        return fail("fork", errno);
    }
    std::string o, e;
    int fds[2] = {out[0], err[0]};
    const auto deadline = Clock::now() + timeout;
    bool timed_out = false;
    while (fds[0] >= 0 || fds[1] >= 0) {
        pollfd p[2];
        int n = 0;
        for (int fd : fds)
            if (fd >= 0) p[n++] = {fd, POLLIN, 0};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        int r = ::poll(p, n, static_cast<int>(std::min<long long>(left, 1000)));
        if (r < 0 && errno != EINTR) break;
        for (int i = 0; i < n; ++i) {
            if (!p[i].revents) continue;
            char buf[65536];
            ssize_t got = ::read(p[i].fd, buf, sizeof buf);
            std::string& dst = p[i].fd == fds[0] ? o : e;
            if (got > 0) {
                dst.append(buf, static_cast<std::size_t>(got));
            } else if (got == 0 || errno != EINTR) {
                ::close(p[i].fd);
                (p[i].fd == fds[0] ? fds[0] : fds[1]) = -1;
            }
        }
    }
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
    if (timed_out) ::kill(-pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return {{"ok", true}, {"exit_code", decode(status)}, {"stdout", o}, {"stderr", e}, {"timed_out", timed_out}};
}

json op_read(const json& req) {
    json files = json::object();
    for (const auto& p : req.at("paths")) {
        auto path = p.get<std::string>();
        auto content = memhp::try_read_file(path);
        files[path] = content ? json(*content) : json(nullptr);
    }
    return {{"ok", true}, {"files", files}};
}

json op_write(const json& req) {
    auto path = req.at("path").get<std::string>();
    auto data = req.at("data").get<std::string>();
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fail("open " + path, errno);
    ssize_t w = ::write(fd, data.data(), data.size());
    int err = errno;
    ::close(fd);
    if (w < 0) return fail("write '" + data + "' to " + path, err);
    if (static_cast<std::size_t>(w) != data.size()) return fail("short write to " + path);
    return {{"ok", true}};
}

json op_listdir(const json& req) {
    auto path = req.at("path").get<std::string>();
    DIR* d = ::opendir(path.c_str());
    if (!d) return fail("opendir " + path, errno);
    std::vector<std::string> names;
    while (dirent* ent = ::readdir(d)) {
        std::string n = ent->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return {{"ok", true}, {"entries", names}};
}

json op_spawn(const json& req) {
    auto argv = req.at("argv").get<std::vector<std::string>>();
    if (argv.empty()) return fail("spawn: empty argv");
    auto output = req.value("output", std::string("/dev/null"));
    int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail("open " + output, errno);
    pid_t pid = start(argv, fd, fd);
    ::close(fd);
    if (pid < 0) return fail("fork", errno);
    g_spawned.insert(pid);
    return {{"ok", true}, {"pid", pid}};
}

json op_wait(const json& req) {
    pid_t pid = req.at("pid").get<pid_t>();
    if (!g_spawned.count(pid)) return fail("wait: pid " + std::to_string(pid) + " was not spawned by the agent");
    auto deadline = Clock::now() + std::chrono::milliseconds(req.value("timeout_ms", 0));
    while (true) {
        int status = 0;
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            g_spawned.erase(pid);
            return {{"ok", true}, {"exited", true}, {"exit_code", decode(status)}};
        }
        if (r < 0) return fail("waitpid", errno);
        if (Clock::now() >= deadline) return {{"ok", true}, {"exited", false}};
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

json op_signal(const json& req) {
    pid_t pid = req.at("pid").get<pid_t>();
    int sig = req.value("signal", SIGTERM);
    if (!g_spawned.count(pid)) return fail("signal: pid " + std::to_string(pid) + " was not spawned by the agent");
    if (::kill(-pid, sig) != 0 && ::kill(pid, sig) != 0) return fail("kill", errno);
    return {{"ok", true}};
}

json dispatch(const json& req) {
    auto op = req.value("op", std::string());
    if (op == "exec") return op_exec(req);
    if (op == "read") return op_read(req);
    if (op == "write") return op_write(req);
    if (op == "listdir") return op_listdir(req);
    if (op == "spawn") return op_spawn(req);
    if (op == "wait") return op_wait(req);
    if (op == "signal") return op_signal(req);
    if (op == "ping") return {{"ok", true}, {"uptime_s", uptime_s()}};
    return fail("unknown op '" + op + "'");
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"memhp guest agent: serves the lab host over a virtio-serial port (started by the guest's init)"};
    std::string port;
    app.add_option("--port", port, "virtio-serial port device, e.g. /dev/vport0p1")->required();
    app.add_option("--cwd", g_cwd, "working directory for commands (the host's cwd at launch)");
    CLI11_PARSE(app, argc, argv);
    if (g_cwd.empty()) g_cwd = "/";
    ::signal(SIGPIPE, SIG_IGN);
    // Never the OOM killer's victim: the scenarios push the guest to OOM on
    // purpose. Inherited by what it starts (memhp trace); memhp-hog raises
    // its own back up.
    try {
        memhp::write_file("/proc/self/oom_score_adj", "-1000");
    } catch (const std::exception& e) {
        std::cerr << "memhp-agent: " << e.what() << "\n";
    }
    // Near the watermarks reclaim evicts file pages, our own text among them,
    // read back over 9p under TCG: the agent would stall for seconds.
    if (::mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
        std::cerr << "memhp-agent: mlockall: " << std::strerror(errno) << "\n";

    int fd = ::open(port.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        std::cerr << "memhp-agent: cannot open " << port << ": " << std::strerror(errno) << "\n";
        return 1;
    }
    memhp::LineChannel ch(fd, port);
    ch.set_eof_is_retry(true);  // the host may not be connected yet
    const auto forever = [] { return Clock::now() + std::chrono::hours(24 * 365); };

    utsname u{};
    ::uname(&u);
    json hello{{"event", "hello"}, {"proto", memhp::lab::kAgentProtocol}, {"release", u.release},
               {"uptime_s", uptime_s()}};
    try {
        ch.write_line(hello.dump(), forever());
        while (true) {
            auto line = ch.read_line(forever());
            if (!line || line->empty()) continue;
            json resp;
            json id = nullptr;
            try {
                auto req = json::parse(*line);
                id = req.value("id", json(nullptr));
                resp = dispatch(req);
            } catch (const std::exception& e) {
                resp = fail(std::string("bad request: ") + e.what());
            }
            resp["id"] = id;
            ch.write_line(resp.dump(-1, ' ', false, json::error_handler_t::replace), forever());
        }
    } catch (const std::exception& e) {
        std::cerr << "memhp-agent: " << e.what() << "\n";
        return 1;
    }
}
