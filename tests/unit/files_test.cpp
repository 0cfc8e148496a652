// SPDX-License-Identifier: Apache-2.0
#include "memhp/files.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cerrno>
#include <csignal>

#include <nlohmann/json.hpp>

#include "memhp/error.hpp"
#include "test_util.hpp"

namespace memhp {
namespace {

using test::EnvGuard;
using ::testing::HasSubstr;

// read(2) in chunks that grow from 4 KiB: sizes around the chunk edges and
// a large file come back byte for byte; a missing file or a directory is
// nullopt.
TEST(ReadFile, WholeContentAcrossChunkSizesAndNothingForMissingOrDirectory) {
    TempDir dir("memhp-files");
    for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4095}, std::size_t{4096}, std::size_t{4097},
                             std::size_t{3} << 20}) {
        std::string text(size, '\0');
        for (std::size_t i = 0; i < size; ++i) text[i] = static_cast<char>('a' + i % 23);
        const auto path = dir.path() / ("f" + std::to_string(size));
        write_file(path, text);
        EXPECT_EQ(read_file(path), text) << size;
    }
    EXPECT_FALSE(try_read_file(dir.path() / "missing"));
    EXPECT_FALSE(try_read_file(dir.path()));
}

// try_read_file / read_file (procfs, sysfs, the cache) are bounded too: in
// the issue /dev/zero ran into bad_alloc after 81 s and a FIFO blocked for ever.
TEST(ReadFile, RefusesDevicesAndFifosWithoutBlocking) {
    TempDir dir;
    ASSERT_EQ(::mkfifo((dir.path() / "p").c_str(), 0600), 0);  // no writer: open would block without O_NONBLOCK
    errno = 0;
    EXPECT_EQ(try_read_file(dir.path() / "p"), std::nullopt);
    EXPECT_EQ(errno, EINVAL);
    EXPECT_EQ(try_read_file("/dev/zero"), std::nullopt);
    EXPECT_EQ(errno, EINVAL);
    try {
        (void)read_file("/dev/zero");
        FAIL() << "read /dev/zero";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("/dev/zero: not a regular file"));
    }
}

TEST(ReadFile, RefusesAFileOverItsBound) {
    TempDir dir;
    write_file(dir.path() / "f", std::string(5000, 'a'));
    EXPECT_EQ(try_read_file(dir.path() / "f", 5000)->size(), 5000u) << "exactly the bound is allowed";
    errno = 0;
    EXPECT_EQ(try_read_file(dir.path() / "f", 4999), std::nullopt);
    EXPECT_EQ(errno, EFBIG);
    EXPECT_THROW((void)read_file(dir.path() / "f", 4999), FileTooLarge);
}

TEST(ReadFile, ProcAndSysFilesReportSizeZeroOrAPageButAreReadWhole) {
    // /proc files have st_size 0, sysfs attributes 4096, whatever they hold:
    // the bound counts bytes read. /proc/self/maps of this binary is several KiB.
    const auto maps = try_read_file("/proc/self/maps");
    ASSERT_TRUE(maps);
    EXPECT_GT(maps->size(), 4096u);
    EXPECT_EQ(maps->back(), '\n');
    EXPECT_EQ(try_read_file("/proc/self/maps", 4096), std::nullopt) << "a generated file over the bound is refused too";
    const auto kallsyms = try_read_file("/proc/kallsyms");
    ASSERT_TRUE(kallsyms);
    EXPECT_GT(kallsyms->size(), 1u << 20) << "MiB of symbols fit the default bound";
    // A sysfs attribute: st_size 4096, a few bytes of content.
    const auto sysfs = try_read_file("/sys/devices/system/memory/block_size_bytes");
    ASSERT_TRUE(sysfs);
    EXPECT_GT(sysfs->size(), 1u);
    EXPECT_LT(sysfs->size(), 4096u);
}

TEST(LastLines, TakesTheLastN) {
    EXPECT_EQ(last_lines("a\nb\nc\n", 2), "b\nc");
    EXPECT_EQ(last_lines("a\nb\nc", 1), "c");
    EXPECT_EQ(last_lines("a\nb\nc", 3), "a\nb\nc");
}

TEST(LastLines, FewerLinesThanN) {
    EXPECT_EQ(last_lines("a\nb\n", 5), "a\nb");
    EXPECT_EQ(last_lines("only", 3), "only");
    EXPECT_EQ(last_lines("", 3), "");
    EXPECT_EQ(last_lines("\n\n", 3), "");
}

TEST(LastLines, ZeroLines) { EXPECT_EQ(last_lines("a\nb\n", 0), ""); }

TEST(LastLines, TrailingNewlinesDoNotCountAsLines) {
    EXPECT_EQ(last_lines("a\nb\n\n\n", 1), "b");
    EXPECT_EQ(last_lines("a\nb\r\n", 1), "b");
}

TEST(LastLines, StripsCarriageReturns) {
    EXPECT_EQ(last_lines("a\r\nb\r\nc\r\n", 2), "b\nc");
    EXPECT_EQ(last_lines("x\r\ny", 5), "x\ny");
}

TEST(LastLines, BlankLinesInsideCount) {
    EXPECT_EQ(last_lines("a\n\nb\n", 2), "\nb");
    EXPECT_EQ(last_lines("a\r\n\r\nb\r\n", 2), "\nb");  // same answer with CRLF
    EXPECT_EQ(last_lines("a\n\nb\n", 3), "a\n\nb");
}

TEST(Trim, StripsAsciiWhitespaceBothEnds) {
    EXPECT_EQ(trim("  a b \t\r\n"), "a b");
    EXPECT_EQ(trim("x"), "x");
    EXPECT_EQ(trim(" \t\r\n "), "");
    EXPECT_EQ(trim(""), "");
    EXPECT_EQ(trim("\tinner  space\t"), "inner  space");
}

TEST(Fnv1a, KnownValues) {
    EXPECT_EQ(fnv1a(""), 0xcbf29ce484222325ULL);
    EXPECT_EQ(fnv1a("a"), 0xaf63dc4c8601ec8cULL);
    EXPECT_EQ(fnv1a("foobar"), 0x85944171f73967e8ULL);
}

TEST(Fnv1a, SeedChainsLikeConcatenation) {
    EXPECT_EQ(fnv1a("bar", fnv1a("foo")), fnv1a("foobar"));
    EXPECT_NE(fnv1a("ab"), fnv1a("ba"));
}

TEST(Hex64, SixteenLowercaseDigits) {
    EXPECT_EQ(hex64(0), "0000000000000000");
    EXPECT_EQ(hex64(1), "0000000000000001");
    EXPECT_EQ(hex64(0xcbf29ce484222325ULL), "cbf29ce484222325");
    EXPECT_EQ(hex64(UINT64_MAX), "ffffffffffffffff");
}

TEST(TempDir, CreatesAndRemovesWithContents) {
    fs::path where;
    {
        TempDir dir("memhp-unit");
        where = dir.path();
        ASSERT_TRUE(fs::is_directory(where));
        EXPECT_THAT(where.filename().string(), ::testing::StartsWith("memhp-unit."));
        fs::create_directories(where / "sub" / "deeper");
        write_file(where / "sub" / "deeper" / "f", "x");
    }
    EXPECT_FALSE(fs::exists(where));
}

TEST(TempDir, TwoAreDistinct) {
    TempDir a, b;
    EXPECT_NE(a.path(), b.path());
}

TEST(TempDir, ReleaseKeepsTheDirectory) {
    fs::path where;
    {
        TempDir dir;
        where = dir.path();
        dir.release();
    }
    EXPECT_TRUE(fs::is_directory(where));
    fs::remove_all(where);
}

TEST(Files, WriteReadRoundTrip) {
    TempDir dir;
    const std::string content("binary\0data\nline2", 17);
    write_file(dir.path() / "f", content);
    EXPECT_EQ(read_file(dir.path() / "f"), content);
    write_file(dir.path() / "f", "short");  // truncates
    EXPECT_EQ(read_file(dir.path() / "f"), "short");
    write_file_atomic(dir.path() / "g", "atomic");
    EXPECT_EQ(try_read_file(dir.path() / "g"), "atomic");
    // No temporary sibling left behind.
    EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2);
}

TEST(Files, MissingFile) {
    TempDir dir;
    EXPECT_EQ(try_read_file(dir.path() / "nope"), std::nullopt);
    try {
        (void)read_file(dir.path() / "nope");
        FAIL() << "read_file of a missing file did not throw";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr((dir.path() / "nope").string()));
    }
    EXPECT_THROW(write_file(dir.path() / "no-dir" / "f", "x"), Error);
}

TEST(FileLock, CreatesTheLockFileAndCanBeRetaken) {
    TempDir dir;
    { FileLock lock(dir.path() / ".lock"); }
    EXPECT_TRUE(fs::exists(dir.path() / ".lock"));
    FileLock again(dir.path() / ".lock");  // released by the first one's destructor
}

TEST(CacheDir, MemhpCacheDirWins) {
    EnvGuard a("MEMHP_CACHE_DIR", "/tmp/memhp-explicit"), b("XDG_CACHE_HOME", "/tmp/xdg"), c("HOME", "/home/u");
    EXPECT_EQ(cache_dir(), fs::path("/tmp/memhp-explicit"));
}

TEST(CacheDir, XdgCacheHomeNext) {
    EnvGuard a("MEMHP_CACHE_DIR", std::nullopt), b("XDG_CACHE_HOME", "/tmp/xdg"), c("HOME", "/home/u");
    EXPECT_EQ(cache_dir(), fs::path("/tmp/xdg/memhp"));
}

TEST(CacheDir, HomeLast) {
    EnvGuard a("MEMHP_CACHE_DIR", std::nullopt), b("XDG_CACHE_HOME", std::nullopt), c("HOME", "/home/u");
    EXPECT_EQ(cache_dir(), fs::path("/home/u/.cache/memhp"));
}

TEST(CacheDir, EmptyValuesAreIgnored) {
    EnvGuard a("MEMHP_CACHE_DIR", ""), b("XDG_CACHE_HOME", ""), c("HOME", "/home/u");
    EXPECT_EQ(cache_dir(), fs::path("/home/u/.cache/memhp"));
}

TEST(CacheDir, NothingSetFallsBackToTmp) {
    EnvGuard a("MEMHP_CACHE_DIR", std::nullopt), b("XDG_CACHE_HOME", std::nullopt), c("HOME", std::nullopt);
    EXPECT_EQ(cache_dir(), fs::temp_directory_path() / "memhp-cache");
}

// A full disk must be an error, not a silently short file: /dev/full fails
// every write with ENOSPC.
TEST(Files, FullDiskIsAnError) {
    try {
        write_file("/dev/full", std::string(100000, 'x'));
        FAIL() << "writing /dev/full did not throw";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("No space left on device"));
        EXPECT_THAT(e.what(), HasSubstr("/dev/full"));
    }
    EXPECT_THROW(append_file("/dev/full", "x"), Error);
}

// An atomic write that fails half-way (here: RLIMIT_FSIZE, EFBIG) leaves the
// old file as it was and no temporary behind.
TEST(Files, FailedAtomicWriteKeepsTheOldFileAndRemovesItsTemporary) {
    TempDir dir;
    const auto target = dir.path() / "results.json";
    write_file_atomic(target, "old");
    struct rlimit old {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    auto* prev = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 1000;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    bool threw = false;
    try {
        write_file_atomic(target, std::string(5000, 'n'));
    } catch (const Error& e) {
        threw = true;
        EXPECT_THAT(e.what(), HasSubstr("cannot write"));
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, prev);
    EXPECT_TRUE(threw);
    EXPECT_EQ(read_file(target), "old");
    EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1) << "a temporary was left";
    // A rename that fails (the target is a non-empty directory) removes the temporary too.
    fs::create_directories(dir.path() / "d" / "x");
    EXPECT_THROW(write_file_atomic(dir.path() / "d", "y"), Error);
    EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2);
}

// Outside input is read with a bound: no FIFO wait, no endless device, no
// file larger than asked for.
TEST(Files, BoundedReadRefusesWhatIsNotARegularFileOfBoundedSize) {
    TempDir dir;
    write_file(dir.path() / "f", std::string(100, 'a'));
    EXPECT_EQ(read_file_bounded(dir.path() / "f", 100).size(), 100u);
    EXPECT_THROW((void)read_file_bounded(dir.path() / "f", 99), FileTooLarge);
    ASSERT_EQ(::mkfifo((dir.path() / "p").c_str(), 0600), 0);
    EXPECT_THAT(
        [&] {
            try {
                (void)read_file_bounded(dir.path() / "p", 100);
            } catch (const Error& e) {
                return std::string(e.what());
            }
            return std::string();
        }(),
        HasSubstr("not a regular file"));
    EXPECT_THROW((void)read_file_bounded("/dev/zero", 1 << 20), Error);
    EXPECT_THROW((void)read_file_bounded(dir.path() / "missing", 100), Error);
}

// A range of a file another process appends to (the guest agent follows the
// trace's NDJSON this way): at most max_bytes from the offset, the size seen
// at open, nothing past the end, and the same refusals as the whole-file reads.
TEST(Files, RangeReadFromAnOffsetBoundedAndOnlyOfRegularFiles) {
    TempDir dir;
    const auto f = dir.path() / "f";
    write_file(f, "0123456789");
    auto r = try_read_file_range(f, 3, 4);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->data, "3456");
    EXPECT_EQ(r->size, 10u);
    r = try_read_file_range(f, 8, 100);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->data, "89");
    r = try_read_file_range(f, 50, 100);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->data, "");
    errno = 0;
    EXPECT_FALSE(try_read_file_range(f, std::uint64_t{1} << 63, 4));
    EXPECT_EQ(errno, EOVERFLOW);
    ASSERT_EQ(::mkfifo((dir.path() / "p").c_str(), 0600), 0);
    EXPECT_FALSE(try_read_file_range(dir.path() / "p", 0, 4));
    EXPECT_EQ(errno, EINVAL);
    EXPECT_FALSE(try_read_file_range("/dev/zero", 0, 4));
    EXPECT_EQ(errno, EINVAL);
    EXPECT_FALSE(try_read_file_range(dir.path() / "missing", 0, 4));
    EXPECT_EQ(errno, ENOENT);
}

// Guest consoles print anything; stored text must be UTF-8 (nlohmann's dump
// throws otherwise and a results file would keep "running" for ever).
TEST(Files, ValidUtf8ReplacesWhatIsNotUtf8) {
    EXPECT_EQ(valid_utf8("plain ascii\n"), "plain ascii\n");
    EXPECT_EQ(valid_utf8("na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80"), "na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80");
    const std::string r = "\xef\xbf\xbd";
    EXPECT_EQ(valid_utf8("a\xff"
                         "b"),
              "a" + r + "b");
    EXPECT_EQ(valid_utf8("\xc0\xaf"), r + r) << "overlong";
    EXPECT_EQ(valid_utf8("\xed\xa0\x80"), r + r + r) << "surrogate";
    EXPECT_EQ(valid_utf8("end\xe2\x82"), "end" + r + r) << "truncated";
    EXPECT_EQ(valid_utf8("\xf4\x90\x80\x80"), r + r + r + r) << "above U+10FFFF";
    // What the runner stores: a console tail with a stray byte dumps fine.
    nlohmann::json j{{"errors", {valid_utf8("kernel said \x9b[0m boom")}}};
    EXPECT_NO_THROW((void)j.dump());
    nlohmann::json raw{{"errors", {"kernel said \x9b[0m boom"}}};
    EXPECT_THROW((void)raw.dump(), nlohmann::json::type_error) << "the failure the runner had";
    EXPECT_NO_THROW((void)raw.dump(1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace
}  // namespace memhp
