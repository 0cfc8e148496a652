#include "memhp/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "memhp/error.hpp"
#include "memhp/stop.hpp"

namespace memhp {

std::optional<std::string> try_read_file(const fs::path& path) {
    // Plain read(2) in large chunks: procfs lists such as /proc/kallsyms are
    // megabytes generated on the fly, and memhp reads them at start-up.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string out;
    std::size_t used = 0;
    for (;;) {
        if (used == out.size()) out.resize(std::max<std::size_t>(out.size() * 2, 4096));  // sysfs files stay small
        const ssize_t n = ::read(fd, out.data() + used, out.size() - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            errno = err;
            return std::nullopt;
        }
        if (n == 0) break;
        used += static_cast<std::size_t>(n);
    }
    ::close(fd);
    out.resize(used);
    return out;
}

std::string read_file(const fs::path& path) {
    auto content = try_read_file(path);
    if (!content) throw_errno("cannot read " + path.string(), errno);
    return *content;
}

void write_file(const fs::path& path, std::string_view content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw_errno("cannot write " + path.string(), errno);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) throw_errno("cannot write " + path.string(), errno);
}

void write_file_atomic(const fs::path& path, std::string_view content) {
    fs::path tmp = path;
    tmp += ".tmp." + std::to_string(::getpid());
    write_file(tmp, content);
    fs::rename(tmp, path);
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
    if (!::mkdtemp(buf.data())) throw_errno("cannot create a temporary directory in " + fs::temp_directory_path().string(), errno);
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
