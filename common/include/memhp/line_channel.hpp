#pragma once
// Newline-framed messages over a stream fd (unix socket, virtio-serial port).
// Every read and write has a deadline; a `tick` callback runs about every
// 100 ms while waiting so callers can abort (QEMU died, Ctrl-C) by throwing.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "memhp/error.hpp"

namespace memhp {

class ChannelClosed : public Error {
public:
    using Error::Error;
};

class LineChannel {
public:
    using Clock = std::chrono::steady_clock;
    using Tick = std::function<void()>;

    LineChannel() = default;
    explicit LineChannel(int fd, std::string name = "channel");
    ~LineChannel();
    LineChannel(LineChannel&& other) noexcept;
    LineChannel& operator=(LineChannel&& other) noexcept;
    LineChannel(const LineChannel&) = delete;
    LineChannel& operator=(const LineChannel&) = delete;

    // Connects to a unix socket, retrying until `timeout` (the server may not
    // have created it yet). Throws Error on timeout.
    static LineChannel connect_unix(const std::string& path, std::chrono::milliseconds timeout,
                                    const Tick& tick = {});

    [[nodiscard]] int fd() const { return fd_; }
    [[nodiscard]] bool is_open() const { return fd_ >= 0; }
    // With `eof_is_retry`, a read of 0 bytes is treated as "peer not there
    // yet" (virtio-serial before the host connects) instead of ChannelClosed.
    void set_eof_is_retry(bool v) { eof_is_retry_ = v; }

    // Next line without its terminator ("\n" or "\r\n"), or nullopt at the deadline.
    // Throws ChannelClosed when the peer closes, Error on I/O errors.
    std::optional<std::string> read_line(Clock::time_point deadline, const Tick& tick = {});
    // Writes `line` plus "\n". Throws on timeout or error.
    void write_line(std::string_view line, Clock::time_point deadline, const Tick& tick = {});

private:
    // Runs `tick` for up to 5 s (it may throw a better error), then
    // throws ChannelClosed.
    [[noreturn]] void peer_closed(const Tick& tick);
    void close();
    int fd_ = -1;
    std::string name_;
    std::string buffer_;
    bool eof_is_retry_ = false;
};

}  // namespace memhp
