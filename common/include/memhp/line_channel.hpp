// SPDX-License-Identifier: Apache-2.0
#pragma once
// Newline-framed messages over a stream fd (unix socket, virtio-serial port).
// Every read and write has a deadline; a `tick` callback runs about every
// 100 ms while waiting so callers can abort (QEMU died, Ctrl-C) by throwing.
#include <chrono>
#include <cstddef>
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

// A line longer than the channel's max_line(): the peer is broken or hostile.
// The channel stays usable: the rest of that line is discarded and reading
// resumes after its newline.
class LineTooLong : public Error {
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
    static LineChannel connect_unix(const std::string& path, std::chrono::milliseconds timeout, const Tick& tick = {});

    [[nodiscard]] int fd() const { return fd_; }
    [[nodiscard]] bool is_open() const { return fd_ >= 0; }
    // With `eof_is_retry`, a read of 0 bytes is treated as "peer not there
    // yet" (virtio-serial before the host connects) instead of ChannelClosed.
    void set_eof_is_retry(bool v) { eof_is_retry_ = v; }
    // The longest line read_line() accepts (bytes, without the newline); a
    // longer one throws LineTooLong as soon as the limit is passed, so memory
    // stays bounded by it. Default kDefaultMaxLine.
    static constexpr std::size_t kDefaultMaxLine = std::size_t{1} << 20;
    void set_max_line(std::size_t bytes) { max_line_ = bytes; }
    [[nodiscard]] std::size_t max_line() const { return max_line_; }
    [[nodiscard]] const std::string& name() const { return name_; }

    // Next line without its terminator ("\n" or "\r\n"), or nullopt at the deadline.
    // Throws ChannelClosed when the peer closes, LineTooLong past max_line(),
    // Error on I/O errors.
    std::optional<std::string> read_line(Clock::time_point deadline, const Tick& tick = {});
    // Writes `line` plus "\n". Throws on timeout or error.
    void write_line(std::string_view line, Clock::time_point deadline, const Tick& tick = {});

private:
    // Runs `tick` for up to 5 s (it may throw a better error), then
    // throws ChannelClosed.
    [[noreturn]] void peer_closed(const Tick& tick);
    [[noreturn]] void too_long() const;
    void close();
    int fd_ = -1;
    std::string name_;
    std::string buffer_;
    std::size_t scanned_ = 0;  // buffer_[0, scanned_) holds no newline
    std::size_t max_line_ = kDefaultMaxLine;
    bool discarding_ = false;  // inside a line that was too long: drop to its newline
    bool eof_is_retry_ = false;
};

}  // namespace memhp
