// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "memhp/error.hpp"

namespace memhp {

namespace fs = std::filesystem;

class FileTooLarge : public Error {
public:
    using Error::Error;
};

// Whole-file helpers for files the system or memhp itself writes (procfs,
// sysfs, tracefs, the cache). Bounded: at most max_bytes are read (a longer
// file is refused: nullopt with errno EFBIG, or FileTooLarge from read_file),
// and only regular files are opened, without blocking (a FIFO, socket or
// device such as /dev/zero: nullopt with errno EINVAL, or Error). procfs and
// sysfs files are regular with a size of 0 or 4096 whatever they hold, so the
// bound counts the bytes read, not st_size. read_file throws Error naming the
// path and the cause.
inline constexpr std::size_t kReadFileMax = std::size_t{64} << 20;  // /proc/kallsyms is a few MiB
[[nodiscard]] std::string read_file(const fs::path& path, std::size_t max_bytes = kReadFileMax);
[[nodiscard]] std::optional<std::string> try_read_file(const fs::path& path, std::size_t max_bytes = kReadFileMax);
// Outside input: refuses anything but a regular file (FIFOs, devices such as
// /dev/zero) without blocking, and files larger than max_bytes
// (FileTooLarge); throws Interrupted on SIGINT/SIGTERM.
[[nodiscard]] std::string read_file_bounded(const fs::path& path, std::size_t max_bytes);
// Up to max_bytes of a regular file from `offset` (pread), and the file's
// size when opened: for following a file another process appends to. Refuses
// anything but a regular file without blocking (nullopt, errno EINVAL);
// nullopt with errno on any other failure.
struct FileRange {
    std::string data;
    std::uint64_t size = 0;
};
[[nodiscard]] std::optional<FileRange> try_read_file_range(const fs::path& path, std::uint64_t offset,
                                                           std::size_t max_bytes);
// Every write, and close(), checked: a full disk is an Error (ENOSPC).
void write_file(const fs::path& path, std::string_view content);
void append_file(const fs::path& path, std::string_view content);
// Writes and fsyncs a temporary sibling and renames it over `path`: readers
// see the old or the new file, never a partial one; on failure the temporary
// is removed and `path` is untouched.
void write_file_atomic(const fs::path& path, std::string_view content);

// $XDG_CACHE_HOME/memhp, or ~/.cache/memhp; $MEMHP_CACHE_DIR overrides both.
[[nodiscard]] fs::path cache_dir();

// The last `n` lines of `text` (without a trailing empty line).
[[nodiscard]] std::string last_lines(std::string_view text, std::size_t n);
[[nodiscard]] std::string trim(std::string_view s);
// `s` with every byte sequence that is not UTF-8 (stray bytes, overlong forms,
// surrogates, truncated sequences) replaced by U+FFFD: guest text made storable.
[[nodiscard]] std::string valid_utf8(std::string_view s);

// Stable 64-bit FNV-1a, for cache keys; hex form.
[[nodiscard]] std::uint64_t fnv1a(std::string_view data, std::uint64_t seed = 0xcbf29ce484222325ULL);
[[nodiscard]] std::string hex64(std::uint64_t v);

// A private directory under $TMPDIR, removed with everything in it on destruction.
class TempDir {
public:
    explicit TempDir(std::string_view prefix = "memhp");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const fs::path& path() const { return path_; }
    // Leave the directory behind (e.g. --keep): the destructor does nothing.
    void release() { released_ = true; }

private:
    fs::path path_;
    bool released_ = false;
};

// An exclusive flock(2) on a lock file, held for the object's lifetime. Guards
// cache entries against concurrent builders (parallel ctest, two terminals).
class FileLock {
public:
    explicit FileLock(const fs::path& lock_file);
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    int fd_ = -1;
};

}  // namespace memhp
