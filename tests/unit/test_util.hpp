// SPDX-License-Identifier: Apache-2.0
#pragma once
// Helpers for tests that put a fake peer (QEMU's QMP, the guest agent) on the
// far end of a socketpair.
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace memhp::test {

// A connected AF_UNIX stream pair: `near` goes to the code under test (which
// takes ownership), `far` to the fake peer.
struct SocketPair {
    int near = -1;
    int far = -1;
};

inline SocketPair make_socketpair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair failed");
    return {fds[0], fds[1]};
}

// Blocking line I/O for the fake peer. Reads give up after 5 s so a broken
// test fails instead of hanging.
class Peer {
public:
    explicit Peer(int fd) : fd_(fd) {
        timeval tv{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~Peer() { close(); }
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    // Next line without "\n"; nullopt on EOF or timeout.
    std::optional<std::string> read_line() {
        while (true) {
            if (auto nl = buf_.find('\n'); nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return line;
            }
            char tmp[4096];
            ssize_t got = ::read(fd_, tmp, sizeof tmp);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) return std::nullopt;
            buf_.append(tmp, static_cast<std::size_t>(got));
        }
    }

    // Writes `raw` as is (add "\n" yourself).
    void send(std::string_view raw) {
        while (!raw.empty()) {
            ssize_t w = ::send(fd_, raw.data(), raw.size(), MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return;
            raw.remove_prefix(static_cast<std::size_t>(w));
        }
    }

    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_;
    std::string buf_;
};

// A fake peer that speaks JSON lines (QEMU's QMP, the guest agent): sends
// JSON, and records every request it reads for the test to inspect.
class JsonPeer {
public:
    explicit JsonPeer(int fd) : peer_(fd) {}

    void send(const nlohmann::json& msg) { peer_.send(msg.dump() + "\n"); }
    void send_raw(std::string_view raw) { peer_.send(raw); }
    // Reads the next request, records it and returns it; null on EOF or timeout.
    nlohmann::json next_request() {
        auto line = peer_.read_line();
        if (!line) return nullptr;
        nlohmann::json req = nlohmann::json::parse(*line);
        requests.push_back(req);
        return req;
    }
    void close() { peer_.close(); }

    std::vector<nlohmann::json> requests;

private:
    Peer peer_;
};

// Sets (or unsets, with nullopt) an environment variable; restores it on destruction.
class EnvGuard {
public:
    EnvGuard(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
        if (const char* old = std::getenv(name_.c_str())) old_ = old;
        if (value)
            ::setenv(name_.c_str(), value->c_str(), 1);
        else
            ::unsetenv(name_.c_str());
    }
    ~EnvGuard() {
        if (old_)
            ::setenv(name_.c_str(), old_->c_str(), 1);
        else
            ::unsetenv(name_.c_str());
    }
    EnvGuard(const EnvGuard&) = delete;
    EnvGuard& operator=(const EnvGuard&) = delete;

private:
    std::string name_;
    std::optional<std::string> old_;
};

}  // namespace memhp::test
