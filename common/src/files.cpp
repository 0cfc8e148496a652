// SPDX-License-Identifier: Apache-2.0
#include "memhp/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <vector>

#include "memhp/error.hpp"
#include "memhp/stop.hpp"

namespace memhp {

namespace {

enum class ReadFail { None, Open, NotRegular, TooLarge, Read };

// Closes on scope exit and leaves errno as it was.
struct Fd {
    int fd;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        const int err = errno;
        ::close(fd);
        errno = err;
    }
};

// Opens a regular file for reading. O_NONBLOCK: opening a FIFO must not wait
// for a writer; the type check then refuses it, and devices such as /dev/zero,
// before any read (NotRegular, errno EINVAL). -1 on failure.
int open_regular(const fs::path& path, struct stat& st, ReadFail& why) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        why = ReadFail::Open;
        return -1;
    }
    const bool stat_ok = ::fstat(fd, &st) == 0;
    if (stat_ok && S_ISREG(st.st_mode)) return fd;
    const Fd closer{fd};
    why = stat_ok ? ReadFail::NotRegular : ReadFail::Open;
    if (stat_ok) errno = EINVAL;
    return -1;
}

// Reads a regular file of at most max_bytes; on failure sets `why` and errno.
// With `interruptible`, SIGINT/SIGTERM stop the read (Interrupted).
std::optional<std::string> read_capped(const fs::path& path, std::size_t max_bytes, ReadFail& why,
                                       bool interruptible = false) {
    struct stat st {};
    const int fd = open_regular(path, st, why);
    if (fd < 0) return std::nullopt;
    Fd closer{fd};
    const auto fail = [&why](ReadFail w, int err) {
        why = w;
        errno = err;
        return std::nullopt;
    };
    // st_size is 0 (procfs) or a page (sysfs) for generated files: a hint only.
    if (static_cast<std::uint64_t>(st.st_size) > max_bytes) return fail(ReadFail::TooLarge, EFBIG);
    // Plain read(2) in large chunks: procfs lists such as /proc/kallsyms are
    // megabytes generated on the fly, and memhp reads them at start-up.
    std::string out;
    std::size_t used = 0;
    for (;;) {
        if (interruptible && stop_requested()) throw Interrupted();
        if (used == out.size()) {
            if (used > max_bytes) return fail(ReadFail::TooLarge, EFBIG);
            // sysfs files stay small; the + 1 lets a file of max_bytes + 1 show.
            out.resize(std::min(std::max<std::size_t>(out.size() * 2, std::max<std::size_t>(4096, st.st_size + 1)),
                                max_bytes + 1));
        }
        const ssize_t n = ::read(fd, out.data() + used, std::min<std::size_t>(out.size() - used, 1u << 20));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(ReadFail::Read, errno);
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
    }
    if (used > max_bytes) return fail(ReadFail::TooLarge, EFBIG);
    out.resize(used);
    why = ReadFail::None;
    return out;
}

}  // namespace

std::optional<std::string> try_read_file(const fs::path& path, std::size_t max_bytes) {
    ReadFail why{};
    return read_capped(path, max_bytes, why);
}

namespace {

// read_capped, with its failure thrown: Error naming the path and the cause,
// FileTooLarge (its message led by `too_large`) past max_bytes.
std::string read_or_throw(const fs::path& path, std::size_t max_bytes, bool interruptible,
                          const std::string& too_large) {
    ReadFail why{};
    auto content = read_capped(path, max_bytes, why, interruptible);
    if (content) return std::move(*content);
    switch (why) {
        case ReadFail::NotRegular: throw Error("cannot read " + path.string() + ": not a regular file");
        case ReadFail::TooLarge:
            throw FileTooLarge(too_large + ": more than the " + std::to_string(max_bytes) + " bytes allowed");
        default: throw_errno("cannot read " + path.string(), errno);
    }
}

}  // namespace

std::string read_file(const fs::path& path, std::size_t max_bytes) {
    return read_or_throw(path, max_bytes, false, "cannot read " + path.string());
}

std::string read_file_bounded(const fs::path& path, std::size_t max_bytes) {
    return read_or_throw(path, max_bytes, true, path.string());
}

std::optional<FileRange> try_read_file_range(const fs::path& path, std::uint64_t offset, std::size_t max_bytes) {
    if (offset > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) {
        errno = EOVERFLOW;
        return std::nullopt;
    }
    ReadFail why{};
    struct stat st {};
    const int fd = open_regular(path, st, why);
    if (fd < 0) return std::nullopt;
    Fd closer{fd};
    std::string data(max_bytes, '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        const ssize_t n = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    data.resize(got);
    return FileRange{std::move(data), static_cast<std::uint64_t>(st.st_size)};
}

namespace {

void write_all(int fd, std::string_view content, const fs::path& path) {
    const char* p = content.data();
    std::size_t left = content.size();
    while (left > 0) {
        const ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("cannot write " + path.string(), errno);
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

// Writes, optionally fsyncs, and closes; every step checked (a full disk
// shows up at write, fsync or close depending on the file system).
// `shown` is the path messages name (the target, not its temporary).
void write_checked(const fs::path& path, std::string_view content, int flags, bool sync, const fs::path& shown) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
    if (fd < 0) throw_errno("cannot write " + shown.string(), errno);
    try {
        write_all(fd, content, shown);
        if (sync && ::fsync(fd) != 0) throw_errno("cannot write " + shown.string() + " (fsync)", errno);
    } catch (...) {
        ::close(fd);
        throw;
    }
    if (::close(fd) != 0) throw_errno("cannot write " + shown.string() + " (close)", errno);
}

}  // namespace

void write_file(const fs::path& path, std::string_view content) { write_checked(path, content, O_TRUNC, false, path); }

void append_file(const fs::path& path, std::string_view content) {
    write_checked(path, content, O_APPEND, false, path);
}

void write_file_atomic(const fs::path& path, std::string_view content) {
    fs::path tmp = path;
    tmp += ".tmp." + std::to_string(::getpid());
    try {
        write_checked(tmp, content, O_TRUNC, true, path);
        std::error_code ec;
        fs::rename(tmp, path, ec);
        if (ec) throw Error("cannot write " + path.string() + " (rename): " + ec.message());
    } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw;
    }
    // The rename is durable once the directory is synced.
    fs::path dir = path.parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);  // best effort: some file systems refuse fsync on directories
        ::close(dfd);
    }
}

fs::path cache_dir() {
    if (const char* d = std::getenv("MEMHP_CACHE_DIR"); d && *d) return fs::path(d);
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "memhp";
    if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "memhp";
    return fs::temp_directory_path() / "memhp-cache";
}

std::string last_lines(std::string_view text, std::size_t n) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    std::size_t pos = text.size();
    for (std::size_t i = 0; i < n && pos > 0; ++i) {
        auto nl = text.rfind('\n', pos - 1);
        if (nl == std::string_view::npos) {
            pos = 0;
            break;
        }
        pos = nl;
        if (i + 1 == n) ++pos;  // keep this newline out
    }
    std::string_view tail = text.substr(pos);
    std::string out;
    out.reserve(tail.size());
    for (char c : tail)
        if (c != '\r') out += c;
    return out;
}

std::string trim(std::string_view s) {
    const auto* ws = " \t\r\n";
    auto b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    auto e = s.find_last_not_of(ws);
    return std::string(s.substr(b, e - b + 1));
}

std::string valid_utf8(std::string_view s) {
    static constexpr const char* kReplacement = "\xef\xbf\xbd";
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        std::uint32_t cp = 0, min = 0;
        if (c < 0x80)
            len = 1, cp = c;
        else if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07, min = 0x10000;
        bool ok = len > 0 && i + len <= s.size();
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80)
                ok = false;
            else
                cp = (cp << 6) | (cc & 0x3f);
        }
        if (ok && len > 1 && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
        if (ok) {
            out.append(s.substr(i, len));
            i += len;
        } else {
            out += kReplacement;
            ++i;  // resynchronise on the next byte
        }
    }
    return out;
}

std::uint64_t fnv1a(std::string_view data, std::uint64_t seed) {
    std::uint64_t h = seed;
    for (unsigned char c : data) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    return h;
}

std::string hex64(std::uint64_t v) {
    char buf[17];
    static constexpr char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        buf[i] = digits[v & 0xf];
        v >>= 4;
    }
    buf[16] = 0;
    return buf;
}

TempDir::TempDir(std::string_view prefix) {
    std::string templ = (fs::temp_directory_path() / (std::string(prefix) + ".XXXXXX")).string();
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
        throw_errno("cannot create a temporary directory in " + fs::temp_directory_path().string(), errno);
    path_ = buf.data();
}

TempDir::~TempDir() {
    if (released_) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
}

FileLock::FileLock(const fs::path& lock_file) {
    fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw_errno("cannot open lock file " + lock_file.string(), errno);
    while (::flock(fd_, LOCK_EX) != 0) {
        if (errno == EINTR && stop_requested()) {
            ::close(fd_);
            throw Interrupted();
        }
        if (errno != EINTR) {
            int err = errno;
            ::close(fd_);
            throw_errno("cannot lock " + lock_file.string(), err);
        }
    }
}

FileLock::~FileLock() {
    if (fd_ >= 0) ::close(fd_);
}

}  // namespace memhp
