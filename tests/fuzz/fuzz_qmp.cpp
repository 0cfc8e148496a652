// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: what QEMU (or a process pretending to be it) sends on the
// QMP socket, through QmpClient's handshake and one command.
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdint>

#include "memhp/error.hpp"
#include "memhp/lab/qmp.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const bool once = [] {
        std::signal(SIGPIPE, SIG_IGN);
        return true;
    }();
    (void)once;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    // Everything QEMU would say, then EOF: the client must end with a result
    // or an Error, never block past its timeout or crash.
    std::size_t off = 0;
    while (off < size) {
        const ssize_t n = ::send(sv[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
    }
    ::shutdown(sv[1], SHUT_WR);
    try {
        memhp::lab::QmpClient qmp{memhp::LineChannel(sv[0])};
        (void)qmp.handshake(std::chrono::milliseconds(200));
        (void)qmp.execute("query-memory-devices", nullptr, std::chrono::milliseconds(200));
    } catch (const memhp::Error&) {}
    ::close(sv[1]);
    return 0;
}
