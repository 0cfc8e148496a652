// SPDX-License-Identifier: Apache-2.0
// The whole --kernel fetch path of KernelCache: resolve a suite's meta
// package, find a package's suite, download, unpack (both layouts), depmod,
// the cache entry, and the errors on the way, with apt-get and apt-cache
// replaced by fakes on PATH that serve the real Packages stanzas of
// fixtures/kernels and .debs built here with the real dpkg-deb.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/lab/kernel_cache.hpp"
#include "memhp/process.hpp"

namespace memhp::lab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

fs::path fixture(const std::string& name) { return fs::path(MEMHP_SOURCE_DIR) / "tests/unit/fixtures/kernels" / name; }

// The fakes look at the apt options memhp passes: the suite is the name of
// the directory holding Dir::Etc::SourceList (<cache>/apt/<suite>), the
// lists go to Dir::State::Lists. Every call is logged, one per line.
constexpr const char* kFakeCommon = R"sh(#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_APT_LOG"
lists=""; src=""; cmd=""
while [ $# -gt 0 ]; do
  case "$1" in
    -q) ;;
    -o) shift; case "$1" in
          Dir::State::Lists=*) lists="${1#*=}" ;;
          Dir::Etc::SourceList=*) src="${1#*=}" ;;
        esac ;;
    *) cmd="$1"; shift; break ;;
  esac
  shift
done
case "$src" in "$FAKE_APT_CACHE"/apt/*/sources.list) ;; *) echo "E: not memhp's own sources: $src" >&2; exit 100 ;; esac
suite=$(basename "$(dirname "$src")")
)sh";

constexpr const char* kFakeAptGet = R"sh(
case "$cmd" in
  update)
    if [ -e "$FAKE_APT_OFFLINE" ]; then echo "E: Failed to fetch http://deb.debian.org/debian/dists/$suite/InRelease" >&2; exit 100; fi
    : > "$lists/deb.debian.org_debian_dists_${suite}_main_binary-amd64_Packages" ;;
  download)
    for p in "$@"; do
      if [ ! -f "$FAKE_APT_POOL/$p.deb" ]; then echo "E: Can't find a source to download version of '$p'" >&2; exit 100; fi
      cp "$FAKE_APT_POOL/$p.deb" "./${p}_1_amd64.deb"
    done ;;
  *) echo "E: fake apt-get: unexpected command $cmd" >&2; exit 100 ;;
esac
)sh";

constexpr const char* kFakeAptCache = R"sh(
[ "$cmd" = show ] || { echo "E: fake apt-cache: unexpected command $cmd" >&2; exit 100; }
[ "$1" = --no-all-versions ] && shift
f="$FAKE_APT_REPO/$suite/$1.stanza"
if [ -f "$f" ]; then cat "$f"; else echo "N: Unable to locate package $1" >&2; exit 100; fi
)sh";

void put(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    write_file(path, text);
}

class KernelFetch : public ::testing::Test {
protected:
    void SetUp() override {
        for (const char* v : {"PATH", "MEMHP_DEBIAN_MIRROR", "MEMHP_DEBIAN_SECURITY_MIRROR"})
            saved_.emplace_back(v, std::getenv(v) ? std::optional<std::string>(std::getenv(v)) : std::nullopt);
        const fs::path bin = dir_.path() / "bin";
        put(bin / "apt-get", std::string(kFakeCommon) + kFakeAptGet);
        put(bin / "apt-cache", std::string(kFakeCommon) + kFakeAptCache);
        for (const char* f : {"apt-get", "apt-cache"})
            fs::permissions(bin / f, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
        ::setenv("PATH", (bin.string() + ":" + saved_[0].second.value_or("/usr/bin:/bin")).c_str(), 1);
        ::setenv("MEMHP_DEBIAN_MIRROR", "http://deb.debian.org/debian", 1);
        ::setenv("MEMHP_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security", 1);
        ::setenv("FAKE_APT_LOG", log().c_str(), 1);
        ::setenv("FAKE_APT_CACHE", cache_dir().c_str(), 1);
        ::setenv("FAKE_APT_POOL", pool().c_str(), 1);
        ::setenv("FAKE_APT_REPO", (dir_.path() / "repo").c_str(), 1);
        ::setenv("FAKE_APT_OFFLINE", (dir_.path() / "offline").c_str(), 1);
        put(log(), "");
        for (const char* suite : {"bullseye", "bookworm", "trixie", "sid"}) {
            const fs::path repo = dir_.path() / "repo" / suite;
            const std::string meta = read_file(fixture(std::string(suite) + "-linux-image-amd64.stanza"));
            const std::string image = read_file(fixture(std::string(suite) + "-image.stanza"));
            put(repo / "linux-image-amd64.stanza", meta);
            const auto st = parse_package_stanza(image);
            ASSERT_TRUE(st) << suite;
            put(repo / (st->package + ".stanza"), image);
        }
        // bullseye's 5.10 as one classic package; sid's 7.2 as its four parts.
        build_deb("linux-image-5.10.0-32-amd64", fixture("tree-classic"), {"boot", "lib"});
        const fs::path split = fixture("tree-split");
        const std::string r = "usr/lib/modules/7.2.13+deb14-amd64/";
        build_deb("linux-image-7.2.13+deb14-amd64", split, {});
        build_deb("linux-binary-7.2.13+deb14-amd64", split, {r + "vmlinuz"});
        build_deb("linux-modules-7.2.13+deb14-amd64", split, {r + "kernel"});
        build_deb("linux-base-7.2.13+deb14-amd64", split, {r + "config", r + "modules.builtin"});
    }
    void TearDown() override {
        for (const auto& [name, value] : saved_)
            value ? ::setenv(name.c_str(), value->c_str(), 1) : ::unsetenv(name.c_str());
    }

    // A .deb of `package` holding `paths` of `tree` (files or directories).
    void build_deb(const std::string& package, const fs::path& tree, const std::vector<std::string>& paths) {
        const fs::path root = dir_.path() / "debroot" / package;
        put(root / "DEBIAN" / "control", "Package: " + package +
                                             "\nVersion: 1\nArchitecture: amd64\nMaintainer: memhp tests "
                                             "<tests@memhp.invalid>\nDescription: fixture\n");
        for (const auto& p : paths) {
            fs::create_directories((root / p).parent_path());
            fs::copy(tree / p, root / p, fs::copy_options::recursive);
        }
        fs::create_directories(pool());
        run_checked(
            {"dpkg-deb", "--root-owner-group", "-Znone", "-b", root.string(), (pool() / (package + ".deb")).string()});
    }

    [[nodiscard]] std::string log() const { return (dir_.path() / "apt.log").string(); }
    [[nodiscard]] fs::path cache_dir() const { return dir_.path() / "cache"; }
    [[nodiscard]] fs::path pool() const { return dir_.path() / "pool"; }
    [[nodiscard]] std::string calls() const { return read_file(log()); }
    [[nodiscard]] std::size_t count(const std::string& needle) const {
        const std::string text = calls();
        std::size_t n = 0;
        for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
        return n;
    }

    TempDir dir_;
    std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
    std::vector<std::string> progress_;
    KernelCache cache_{cache_dir(), [this](const std::string& m) { progress_.push_back(m); }};
};

TEST_F(KernelFetch, ClassicBullseyeImageIsFetchedUnpackedAndCached) {
    const KernelImage k = cache_.ensure("5.10");
    EXPECT_EQ(k.package, "linux-image-5.10.0-32-amd64");
    EXPECT_EQ(k.suite, "bullseye");
    EXPECT_EQ(k.version, "5.10.223-1");
    EXPECT_EQ(k.release, "5.10.0-32-amd64");
    EXPECT_TRUE(fs::is_regular_file(k.vmlinuz)) << k.vmlinuz;
    EXPECT_EQ(k.vmlinuz, cache_dir() / k.package / "boot" / "vmlinuz-5.10.0-32-amd64");
    EXPECT_EQ(kernel_config_has(k, "MEMORY_HOTPLUG"), true);
    ASSERT_FALSE(k.modules_dir.empty()) << "depmod ran on the unpacked modules";
    EXPECT_TRUE(fs::exists(k.modules_dir / "modules.dep"));
    EXPECT_EQ(count("apt-get -q"), 2u) << "one update, one download:\n" << calls();
    EXPECT_EQ(count(" download linux-image-5.10.0-32-amd64"), 1u) << calls();
    EXPECT_THAT(calls(), HasSubstr("Dir::State::status=" + (cache_dir() / "apt/bullseye/status").string()))
        << "the host's installed packages are never candidates";
    EXPECT_THAT(progress_, ::testing::Contains(HasSubstr("fetching linux-image-5.10.0-32-amd64 from Debian bullseye")));
    // No download, no partial directory left; the lists are fresh for a day.
    const KernelImage again = cache_.ensure("5.10");
    EXPECT_EQ(again.vmlinuz, k.vmlinuz);
    EXPECT_EQ(count(" download "), 1u) << calls();
    EXPECT_EQ(count(" update"), 1u) << calls();
    for (const auto& e : fs::directory_iterator(cache_dir()))
        EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".partial"))) << e.path();
    EXPECT_EQ(read_file(cache_dir() / "resolved-bullseye"), "linux-image-5.10.0-32-amd64");
}

TEST_F(KernelFetch, SidsSplitImageIsFourPackagesGivenTheClassicPaths) {
    const KernelImage k = cache_.ensure("7.2");
    EXPECT_EQ(k.package, "linux-image-7.2.13+deb14-amd64");
    EXPECT_EQ(k.suite, "sid");
    EXPECT_EQ(k.release, "7.2.13+deb14-amd64");
    EXPECT_EQ(count(" download linux-image-7.2.13+deb14-amd64 linux-base-7.2.13+deb14-amd64 "
                    "linux-binary-7.2.13+deb14-amd64 linux-modules-7.2.13+deb14-amd64"),
              1u)
        << calls();
    EXPECT_TRUE(fs::is_symlink(k.vmlinuz)) << k.vmlinuz;
    EXPECT_TRUE(fs::is_regular_file(k.vmlinuz)) << "the link resolves into usr/lib/modules";
    EXPECT_TRUE(fs::is_regular_file(k.config)) << "linux-base's config, at boot/config-<release>: " << k.config;
    ASSERT_FALSE(k.modules_dir.empty());
    EXPECT_TRUE(fs::exists(k.modules_dir / "kernel/drivers/virtio/virtio_mem.ko.xz"));
    EXPECT_TRUE(fs::exists(k.modules_dir / "modules.dep"));
}

TEST_F(KernelFetch, AnExactPackageIsLookedForInTheSuiteItsNameHints) {
    const KernelImage k = cache_.ensure("linux-image-7.2.13+deb14-amd64");
    EXPECT_EQ(k.suite, "sid");
    EXPECT_EQ(count(" update"), 1u) << "+deb14 is sid's: no other suite's lists are fetched\n" << calls();
}

TEST_F(KernelFetch, APackageInNoSuiteGetsTheCurrentKernelsOfEach) {
    try {
        (void)cache_.ensure("linux-image-9.9.9-amd64");
        FAIL() << "no such package";
    } catch (const UsageError&) {
        FAIL() << "the spec is well-formed: not a usage error";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_THAT(what, HasSubstr("linux-image-9.9.9-amd64 is in none of Debian bullseye, bookworm, trixie and sid"));
        EXPECT_THAT(what, HasSubstr("5.10 = linux-image-5.10.0-32-amd64 (bullseye)"));
        EXPECT_THAT(what, HasSubstr("7.2 = linux-image-7.2.13+deb14-amd64 (sid)"));
        EXPECT_THAT(what, HasSubstr("--kernel 5.10, 6.1, 6.12 or 7.2"));
    }
    EXPECT_EQ(count(" download"), 0u);
}

TEST_F(KernelFetch, OfflineFirstTimeSaysWhatToDoAndLaterUsesTheResolvedImage) {
    put(dir_.path() / "offline", "");
    try {
        (void)cache_.ensure("5.10");
        FAIL() << "offline, nothing cached";
    } catch (const Error& e) {
        EXPECT_THAT(std::string(e.what()), HasSubstr("cannot resolve the kernel of Debian bullseye"));
        EXPECT_THAT(std::string(e.what()), HasSubstr("MEMHP_DEBIAN_MIRROR"));
        EXPECT_THAT(std::string(e.what()), HasSubstr("Failed to fetch"));
    }
    fs::remove(dir_.path() / "offline");
    const KernelImage online = cache_.ensure("5.10");
    // A day later the lists are stale and the mirror unreachable: the cached kernel still serves.
    fs::last_write_time(cache_dir() / "apt/bullseye/updated",
                        fs::file_time_type::clock::now() - std::chrono::hours(25));
    put(dir_.path() / "offline", "");
    progress_.clear();
    const KernelImage offline = cache_.ensure("5.10");
    EXPECT_EQ(offline.vmlinuz, online.vmlinuz);
    EXPECT_THAT(progress_, ::testing::Contains(HasSubstr("using the cached linux-image-5.10.0-32-amd64")));
}

TEST_F(KernelFetch, AVersionTheMirrorDroppedIsRetriedOnceThenNamed) {
    fs::remove(pool() / "linux-image-6.12.117+deb13-amd64.deb");  // never built: trixie's image is missing
    try {
        (void)cache_.ensure("6.12");
        FAIL() << "the mirror has no such .deb";
    } catch (const Error& e) {
        EXPECT_THAT(std::string(e.what()),
                    HasSubstr("cannot fetch linux-image-6.12.117+deb13-amd64 from Debian trixie"));
        EXPECT_THAT(std::string(e.what()), HasSubstr("Can't find a source to download"));
        EXPECT_THAT(std::string(e.what()), HasSubstr("MEMHP_DEBIAN_MIRROR"));
    }
    EXPECT_EQ(count(" download "), 2u) << "refreshed the lists and tried again:\n" << calls();
    EXPECT_EQ(count(" update"), 2u) << calls();
    for (const auto& e : fs::directory_iterator(cache_dir()))
        EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".partial"))) << "no half-fetched entry: " << e.path();
    EXPECT_FALSE(fs::exists(cache_dir() / "linux-image-6.12.117+deb13-amd64"));
}

}  // namespace
}  // namespace memhp::lab
