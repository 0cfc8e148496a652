// SPDX-License-Identifier: Apache-2.0
#include "memhp/line_channel.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "memhp/stop.hpp"

namespace memhp {
namespace {
constexpr std::chrono::milliseconds kSlice{100};

int slice_ms(LineChannel::Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - LineChannel::Clock::now());
    if (left.count() <= 0) return 0;
    return static_cast<int>(std::min(left, kSlice).count());
}
}  // namespace

LineChannel::LineChannel(int fd, std::string name) : fd_(fd), name_(std::move(name)) {
    ignore_sigpipe();
    int flags = ::fcntl(fd_, F_GETFL);
    if (flags >= 0) ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
}

LineChannel::~LineChannel() { close(); }

LineChannel::LineChannel(LineChannel&& other) noexcept
    : fd_(other.fd_),
      name_(std::move(other.name_)),
      buffer_(std::move(other.buffer_)),
      scanned_(other.scanned_),
      max_line_(other.max_line_),
      discarding_(other.discarding_),
      eof_is_retry_(other.eof_is_retry_) {
    other.fd_ = -1;
}

LineChannel& LineChannel::operator=(LineChannel&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = other.fd_;
        name_ = std::move(other.name_);
        buffer_ = std::move(other.buffer_);
        scanned_ = other.scanned_;
        max_line_ = other.max_line_;
        discarding_ = other.discarding_;
        eof_is_retry_ = other.eof_is_retry_;
        other.fd_ = -1;
    }
    return *this;
}

void LineChannel::peer_closed(const Tick& tick) {
    // The peer going away usually has a cause its owner can name better
    // (QEMU exited, the guest panicked): give the tick a moment to say so.
    if (tick) {
        const auto until = Clock::now() + std::chrono::milliseconds(5000);
        while (Clock::now() < until) {
            tick();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    throw ChannelClosed(name_ + ": peer closed the connection");
}

void LineChannel::too_long() const {
    throw LineTooLong(name_ + ": the peer sent a line longer than " + std::to_string(max_line_) +
                      " bytes, the limit for this channel (it is broken, or not speaking this protocol)");
}

void LineChannel::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

LineChannel LineChannel::connect_unix(const std::string& path, std::chrono::milliseconds timeout, const Tick& tick) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw Error("socket path too long: " + path);
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const auto deadline = Clock::now() + timeout;
    int last_err = 0;
    while (true) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw_errno("socket", errno);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return LineChannel(fd, path);
        last_err = errno;
        ::close(fd);
        if (Clock::now() >= deadline) break;
        if (tick) tick();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw Error(errno_text("cannot connect to " + path, last_err));
}

std::optional<std::string> LineChannel::read_line(Clock::time_point deadline, const Tick& tick) {
    if (fd_ < 0) throw ChannelClosed(name_ + ": not open");
    while (true) {
        const auto nl = buffer_.find('\n', scanned_);
        if (discarding_) {
            // The tail of a line already refused: drop it, up to its newline.
            if (nl == std::string::npos) {
                buffer_.clear();
                scanned_ = 0;
            } else {
                buffer_.erase(0, nl + 1);
                scanned_ = 0;
                discarding_ = false;
                continue;
            }
        } else if (nl != std::string::npos) {
            std::string line = buffer_.substr(0, nl);
            buffer_.erase(0, nl + 1);
            scanned_ = 0;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.size() > max_line_) too_long();
            return line;
        } else if (buffer_.size() > max_line_ + 1 || (buffer_.size() == max_line_ + 1 && buffer_.back() != '\r')) {
            buffer_.clear();
            scanned_ = 0;
            discarding_ = true;
            too_long();
        } else {
            scanned_ = buffer_.size();
        }
        if (tick) tick();
        int ms = slice_ms(deadline);
        if (ms == 0) return std::nullopt;
        pollfd pfd{fd_, POLLIN, 0};
        int r = ::poll(&pfd, 1, ms);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(name_ + ": poll", errno);
        }
        if (r == 0) continue;
        char buf[65536];
        ssize_t got = ::read(fd_, buf, sizeof buf);
        if (got > 0) {
            buffer_.append(buf, static_cast<std::size_t>(got));
        } else if (got == 0 || (pfd.revents & POLLHUP && got < 0 && errno != EAGAIN)) {
            if (eof_is_retry_) {
                std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                continue;
            }
            peer_closed(tick);
        } else if (errno != EINTR && errno != EAGAIN) {
            throw_errno(name_ + ": read", errno);
        }
    }
}

void LineChannel::write_line(std::string_view line, Clock::time_point deadline, const Tick& tick) {
    if (fd_ < 0) throw ChannelClosed(name_ + ": not open");
    std::string data(line);
    data += '\n';
    std::size_t off = 0;
    while (off < data.size()) {
        ssize_t w = ::write(fd_, data.data() + off, data.size() - off);
        if (w > 0) {
            off += static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno == EPIPE) peer_closed(tick);
        if (w < 0 && errno != EAGAIN && errno != EINTR) throw_errno(name_ + ": write", errno);
        if (tick) tick();
        int ms = slice_ms(deadline);
        if (ms == 0) throw Error(name_ + ": write timed out");
        pollfd pfd{fd_, POLLOUT, 0};
        ::poll(&pfd, 1, ms);
    }
}

}  // namespace memhp
