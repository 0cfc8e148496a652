// SPDX-License-Identifier: Apache-2.0
// The guest side of the agent protocol: see agent_server.hpp.
#include "agent_server.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <thread>

#include "memhp/files.hpp"
#include "memhp/lab/agent_protocol.hpp"

namespace memhp::agent {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using lab::kAgentMaxRequest;
using lab::kAgentMaxResponse;

namespace {

std::string g_cwd = "/";
std::set<pid_t> g_spawned;

double uptime_s() {
    auto text = memhp::try_read_file("/proc/uptime", 4096);
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

json op_exec(const Request& req) {
    const auto& argv = req.argv;
    const auto timeout = std::chrono::milliseconds(req.timeout_ms);
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
                // Beyond the reply's frame limit the output is drained, not kept
                // (the reply then says it was too large).
                if (dst.size() < kAgentMaxResponse) dst.append(buf, static_cast<std::size_t>(got));
            } else if (got == 0 || errno != EINTR) {
                ::close(p[i].fd);
                (p[i].fd == fds[0] ? fds[0] : fds[1]) = -1;
            }
        }
    }
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
    // The child may have closed its pipes and still run (a daemon, `exec
    // >/dev/null`): the deadline holds for its exit too, not only its output.
    if (timed_out) ::kill(-pid, SIGKILL);
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) break;
        if (r == 0 && !timed_out && Clock::now() >= deadline) {
            timed_out = true;
            ::kill(-pid, SIGKILL);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return {{"ok", true}, {"exit_code", decode(status)}, {"stdout", o}, {"stderr", e}, {"timed_out", timed_out}};
}

json op_read(const Request& req) {
    json files = json::object();
    for (const auto& path : req.paths) {
        auto content = memhp::try_read_file(path, kAgentMaxResponse);
        files[path] = content ? json(*content) : json(nullptr);
    }
    return {{"ok", true}, {"files", files}};
}

// Up to kAgentReadChunk bytes of a regular file from req.offset, cut after
// the last newline (unless one line fills the whole chunk): the host reads a
// tracer's growing NDJSON output where it left off, never the whole file again.
json op_read_from(const Request& req) {
    auto r = try_read_file_range(req.path, req.offset, lab::kAgentReadChunk);
    if (!r) return errno == EINVAL ? fail(req.path + " is not a regular file") : fail("read " + req.path, errno);
    auto& data = r->data;
    const std::size_t got = data.size();
    if (const auto nl = data.rfind('\n'); nl != std::string::npos)
        data.resize(nl + 1);
    else if (got < lab::kAgentReadChunk)
        data.clear();  // only a line still being written
    const auto size = static_cast<unsigned long long>(r->size);
    return {{"ok", true}, {"data", data}, {"next", req.offset + data.size()}, {"size", size}};
}

json op_write(const Request& req) {
    const auto& path = req.path;
    const auto& data = req.data;
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fail("open " + path, errno);
    ssize_t w = ::write(fd, data.data(), data.size());
    int err = errno;
    ::close(fd);
    if (w < 0) return fail("write '" + data + "' to " + path, err);
    if (static_cast<std::size_t>(w) != data.size()) return fail("short write to " + path);
    return {{"ok", true}};
}

json op_listdir(const Request& req) {
    const auto& path = req.path;
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

json op_spawn(const Request& req) {
    const auto& argv = req.argv;
    const auto& output = req.output;
    int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail("open " + output, errno);
    pid_t pid = start(argv, fd, fd);
    ::close(fd);
    if (pid < 0) return fail("fork", errno);
    g_spawned.insert(pid);
    return {{"ok", true}, {"pid", pid}};
}

json op_wait(const Request& req) {
    const pid_t pid = req.pid;
    if (!g_spawned.count(pid)) return fail("wait: pid " + std::to_string(pid) + " was not spawned by the agent");
    auto deadline = Clock::now() + std::chrono::milliseconds(req.timeout_ms);
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

json op_signal(const Request& req) {
    const pid_t pid = req.pid;
    const int sig = req.signal;
    if (!g_spawned.count(pid)) return fail("signal: pid " + std::to_string(pid) + " was not spawned by the agent");
    if (::kill(-pid, sig) != 0 && ::kill(pid, sig) != 0) return fail("kill", errno);
    return {{"ok", true}};
}

json dispatch(const Request& req) {
    const auto& op = req.op;
    if (op == "exec") return op_exec(req);
    if (op == "read") return op_read(req);
    if (op == "read_from") return op_read_from(req);
    if (op == "write") return op_write(req);
    if (op == "listdir") return op_listdir(req);
    if (op == "spawn") return op_spawn(req);
    if (op == "wait") return op_wait(req);
    if (op == "signal") return op_signal(req);
    if (op == "ping") return {{"ok", true}, {"uptime_s", uptime_s()}};
    return fail("unknown op '" + op + "'");
}

}  // namespace

namespace {

const json& field(const json& req, const char* name) {
    const auto it = req.find(name);
    if (it == req.end()) throw Error(std::string("missing \"") + name + "\"");
    return *it;
}

std::string string_field(const json& req, const char* name) {
    const auto& v = field(req, name);
    if (!v.is_string()) throw Error(std::string("\"") + name + "\" must be a string");
    return v.get<std::string>();
}

std::vector<std::string> strings_field(const json& req, const char* name, std::size_t max) {
    const auto& v = field(req, name);
    if (!v.is_array()) throw Error(std::string("\"") + name + "\" must be an array of strings");
    if (v.size() > max) throw Error(std::string("\"") + name + "\" has more than " + std::to_string(max) + " entries");
    std::vector<std::string> out;
    for (const auto& e : v) {
        if (!e.is_string()) throw Error(std::string("\"") + name + "\" must be an array of strings");
        out.push_back(e.get<std::string>());
    }
    return out;
}

long long int_field(const json& req, const char* name, long long fallback, long long lo, long long hi) {
    const auto it = req.find(name);
    if (it == req.end()) return fallback;
    if (!it->is_number_integer()) throw Error(std::string("\"") + name + "\" must be an integer");
    // Unsigned values above LLONG_MAX are out of range too.
    if (it->is_number_unsigned() && it->get<unsigned long long>() > static_cast<unsigned long long>(hi))
        throw Error(std::string("\"") + name + "\" must be in " + std::to_string(lo) + ".." + std::to_string(hi));
    const auto v = it->get<long long>();
    if (v < lo || v > hi)
        throw Error(std::string("\"") + name + "\" must be in " + std::to_string(lo) + ".." + std::to_string(hi));
    return v;
}

}  // namespace

Request parse_request(std::string_view line) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded()) throw Error("not JSON");
    if (!j.is_object()) throw Error("not a JSON object");
    Request r;
    if (auto it = j.find("id"); it != j.end()) r.id = *it;
    r.op = string_field(j, "op");
    if (r.op == "exec" || r.op == "spawn") {
        r.argv = strings_field(j, "argv", 65536);
        if (r.argv.empty() || r.argv[0].empty()) throw Error(r.op + ": empty argv");
    }
    if (r.op == "exec")
        r.timeout_ms = int_field(j, "timeout_ms", 60000, 0, kMaxTimeoutMs);
    else if (r.op == "spawn") {
        if (j.contains("output")) r.output = string_field(j, "output");
    } else if (r.op == "read") {
        r.paths = strings_field(j, "paths", kMaxPaths);
    } else if (r.op == "read_from") {
        r.path = string_field(j, "path");
        r.offset =
            static_cast<unsigned long long>(int_field(j, "offset", 0, 0, std::numeric_limits<long long>::max() / 2));
    } else if (r.op == "write") {
        r.path = string_field(j, "path");
        r.data = string_field(j, "data");
    } else if (r.op == "listdir") {
        r.path = string_field(j, "path");
    } else if (r.op == "wait" || r.op == "signal") {
        r.pid = static_cast<int>(int_field(j, "pid", 0, 1, std::numeric_limits<int>::max()));
        if (!j.contains("pid")) throw Error("missing \"pid\"");
        if (r.op == "wait")
            r.timeout_ms = int_field(j, "timeout_ms", 0, 0, kMaxTimeoutMs);
        else
            r.signal = static_cast<int>(int_field(j, "signal", SIGTERM, 0, 64));
    } else if (r.op != "ping") {
        throw Error("unknown op '" + r.op.substr(0, 64) + "'");
    }
    return r;
}

std::string handle_line(std::string_view line) {
    json resp;
    json id = nullptr;
    try {
        const Request req = parse_request(line);
        id = req.id;
        resp = dispatch(req);
    } catch (const std::exception& e) {
        resp = fail(std::string("bad request: ") + e.what());
    }
    resp["id"] = id;
    auto out = resp.dump(-1, ' ', false, json::error_handler_t::replace);
    if (out.size() > kAgentMaxResponse) {
        json too_big = fail("the reply is " + std::to_string(out.size()) + " bytes, more than the protocol's " +
                            std::to_string(kAgentMaxResponse) + " (kAgentMaxResponse): read less at a time");
        too_big["id"] = id;
        out = too_big.dump(-1, ' ', false, json::error_handler_t::replace);
    }
    return out;
}

void serve(LineChannel& ch) {
    ch.set_max_line(kAgentMaxRequest);
    const auto forever = [] { return Clock::now() + std::chrono::hours(24 * 365); };
    utsname u{};
    ::uname(&u);
    json hello{{"event", "hello"}, {"proto", lab::kAgentProtocol}, {"release", u.release}, {"uptime_s", uptime_s()}};
    ch.write_line(hello.dump(-1, ' ', false, json::error_handler_t::replace), forever());
    while (true) {
        std::optional<std::string> line;
        try {
            line = ch.read_line(forever());
        } catch (const LineTooLong& e) {
            // The rest of that line is dropped by the channel; say why, then go on.
            json reply = fail(std::string("bad request: ") + e.what());
            reply["id"] = nullptr;
            ch.write_line(reply.dump(), forever());
            continue;
        }
        if (!line || line->empty()) continue;
        ch.write_line(handle_line(*line), forever());
    }
}

void set_cwd(std::string cwd) { g_cwd = cwd.empty() ? "/" : std::move(cwd); }

}  // namespace memhp::agent
