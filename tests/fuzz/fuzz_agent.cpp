// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the guest agent's line protocol, both sides. The first
// byte picks the side:
//  even: what a guest (or a process posing as the agent) sends the host:
//        AgentClient's hello, then a request of each kind, over a socketpair;
//        each ends with a result or an Error, never a crash or a hang.
//  odd:  what the host sends the agent: the request lines framed by the
//        agent's LineChannel (with a small line cap, to reach the
//        refuse-and-resynchronise path) and checked by agent::parse_request,
//        which must accept or throw Error. Nothing is executed.
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdint>

#include "agent_server.hpp"
#include "memhp/error.hpp"
#include "memhp/lab/agent_client.hpp"

namespace {

void feed(int fd, const std::uint8_t* data, std::size_t size) {
    std::size_t off = 0;
    while (off < size) {
        const ssize_t n = ::send(fd, data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
}

void host_side(int near, int far, const std::uint8_t* data, std::size_t size) {
    using Ms = std::chrono::milliseconds;
    feed(far, data, size);
    memhp::lab::AgentClient agent{memhp::LineChannel(near, "agent")};
    try {
        (void)agent.wait_hello(Ms(200));
        (void)agent.exec({"true"}, Ms(100));
        (void)agent.read(std::vector<std::string>{"/proc/meminfo", "/x"});
        (void)agent.listdir("/sys/devices/system/memory");
        (void)agent.spawn({"sleep", "1"}, "/tmp/out");
        (void)agent.wait(42, Ms(10));
        agent.signal(42, 15);
        (void)agent.ping();
    } catch (const memhp::Error&) {}
}

void guest_side(int near, int far, const std::uint8_t* data, std::size_t size) {
    feed(far, data, size);
    memhp::LineChannel ch(near, "vport");
    ch.set_max_line(512);
    const auto deadline = memhp::LineChannel::Clock::now() + std::chrono::milliseconds(500);
    for (int lines = 0; lines < 100000; ++lines) {
        std::optional<std::string> line;
        try {
            line = ch.read_line(deadline);
        } catch (const memhp::LineTooLong& e) {
            if (e.what()[0] == '\0') __builtin_trap();
            continue;
        } catch (const memhp::ChannelClosed&) {
            return;
        }
        if (!line) return;
        if (line->size() > 512) __builtin_trap();  // the cap held
        try {
            const auto r = memhp::agent::parse_request(*line);
            if ((r.op == "wait" || r.op == "signal") && r.pid <= 0) __builtin_trap();
            if (r.timeout_ms < 0 || r.timeout_ms > memhp::agent::kMaxTimeoutMs) __builtin_trap();
            if ((r.op == "exec" || r.op == "spawn") && r.argv.empty()) __builtin_trap();
        } catch (const memhp::Error&) {}
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const bool once = [] {
        std::signal(SIGPIPE, SIG_IGN);
        return true;
    }();
    (void)once;
    if (size == 0) return 0;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    if (data[0] % 2 == 0)
        host_side(sv[0], sv[1], data + 1, size - 1);
    else
        guest_side(sv[0], sv[1], data + 1, size - 1);
    ::close(sv[1]);
    return 0;
}
