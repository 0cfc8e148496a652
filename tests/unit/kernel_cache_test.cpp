// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/kernel_cache.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace memhp::lab {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Kind = KernelRequest::Kind;

void expect_request(std::string_view spec, Kind kind, const std::string& name) {
    auto r = classify_kernel_spec(spec);
    EXPECT_EQ(r.kind, kind) << spec;
    EXPECT_EQ(r.name, name) << spec;
}

void expect_suite(std::string_view spec, const std::string& suite) {
    auto r = classify_kernel_spec(spec);
    EXPECT_EQ(r.kind, Kind::MetaPackage) << spec;
    EXPECT_EQ(r.name, "linux-image-amd64") << spec;
    EXPECT_EQ(r.suite, suite) << spec;
}

TEST(ClassifyKernelSpec, SeriesAreTheirSuitesMetaPackage) {
    expect_suite("5.10", "bullseye");
    expect_suite("6.1", "bookworm");
    expect_suite("default", "bookworm");
    expect_suite("6.12", "trixie");
    expect_suite("7.2", "sid");
    expect_suite("latest", "sid");
}

TEST(ClassifyKernelSpec, UnknownSeriesListsTheKnownOnes) {
    try {
        (void)classify_kernel_spec("5.15");
        FAIL() << "accepted 5.15";
    } catch (const UsageError& e) {
        EXPECT_THAT(e.what(), HasSubstr("5.15"));
        EXPECT_THAT(e.what(), HasSubstr("5.10 (bullseye)"));
        EXPECT_THAT(e.what(), HasSubstr("7.2 or latest (sid)"));
    }
}

TEST(ClassifyKernelSpec, PackageNames) {
    expect_request("linux-image-6.1.0-56-amd64", Kind::Package, "linux-image-6.1.0-56-amd64");
    expect_request("linux-image-6.12.43+deb12-amd64", Kind::Package, "linux-image-6.12.43+deb12-amd64");
    expect_request("linux-image-amd64", Kind::Package, "linux-image-amd64");
}

TEST(ClassifyKernelSpec, Paths) {
    expect_request("/boot/vmlinuz-6.1.0-56-amd64", Kind::File, "/boot/vmlinuz-6.1.0-56-amd64");
    expect_request("build/arch/x86/boot/bzImage", Kind::File, "build/arch/x86/boot/bzImage");
    expect_request("./bzImage", Kind::File, "./bzImage");
}

TEST(ClassifyKernelSpec, GarbageIsAUsageErrorNamingIt) {
    for (const char* bad : {"newest", "6", "6.1.0", "v6.1", "linux-image-", "linux-image-6.1_amd64", "6.1 "}) {
        try {
            (void)classify_kernel_spec(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), HasSubstr(std::string("'") + bad + "'"));
        }
    }
    EXPECT_THROW((void)classify_kernel_spec(""), UsageError);
}

TEST(ParseDependsImage, MetaPackage) {
    EXPECT_EQ(parse_depends_image("linux-image-amd64\n"
                                  "  Depends: linux-image-6.1.0-56-amd64\n"),
              "linux-image-6.1.0-56-amd64");
    EXPECT_EQ(parse_depends_image("linux-image-6.12-amd64\n"
                                  "  Depends: linux-image-6.12.43+deb12-amd64\n"),
              "linux-image-6.12.43+deb12-amd64");
}

TEST(ParseDependsImage, SkipsOtherRelationsAndTakesTheFirstAlternative) {
    EXPECT_EQ(parse_depends_image("linux-image-amd64\n"
                                  "  PreDepends: linux-image-bogus\n"
                                  "  Recommends: linux-image-6.1.0-55-amd64\n"
                                  "  Depends: linux-base\n"
                                  "  Depends: <linux-image-virtual>\n"
                                  " |Depends: linux-image-6.1.0-56-amd64\n"
                                  "  Depends: linux-image-6.1.0-56-amd64-unsigned\n"
                                  "  Suggests: linux-doc-6.1\n"),
              "linux-image-6.1.0-56-amd64");
}

TEST(ParseDependsImage, NothingUsable) {
    EXPECT_EQ(parse_depends_image(""), std::nullopt);
    EXPECT_EQ(parse_depends_image("linux-image-amd64\n  Recommends: linux-image-6.1.0-56-amd64\n"), std::nullopt);
    EXPECT_EQ(parse_depends_image("linux-image-6.1.0-56-amd64\n"
                                  "  PreDepends: kmod\n"
                                  "  PreDepends: linux-base\n"
                                  " |Depends: initramfs-tools\n"
                                  "  Depends: linux-initramfs-tool\n"
                                  "  Breaks: <initramfs-tools>\n"),
              std::nullopt);
    EXPECT_EQ(parse_depends_image("W: Unable to locate package linux-image-6.99-amd64\n"), std::nullopt);
}

// ---- Packages stanzas and the two package layouts (fixtures/kernels) ----------

fs::path fixture(const std::string& name) { return fs::path(MEMHP_SOURCE_DIR) / "tests/unit/fixtures/kernels" / name; }

PackageStanza stanza(const std::string& name) {
    auto st = parse_package_stanza(read_file(fixture(name)));
    if (!st) throw Error("fixture " + name + " has no stanza");
    return *st;
}

TEST(PackageStanza, EachSuitesMetaPointsAtItsImage) {
    EXPECT_EQ(image_of_meta(stanza("bullseye-linux-image-amd64.stanza")), "linux-image-5.10.0-32-amd64");
    EXPECT_EQ(image_of_meta(stanza("bookworm-linux-image-amd64.stanza")), "linux-image-6.1.0-50-amd64");
    EXPECT_EQ(image_of_meta(stanza("trixie-linux-image-amd64.stanza")), "linux-image-6.12.117+deb13-amd64");
    // sid's meta depends on linux-base-amd64 first: not an image.
    EXPECT_EQ(image_of_meta(stanza("sid-linux-image-amd64.stanza")), "linux-image-7.2.13+deb14-amd64");
}

TEST(PackageStanza, ClassicImageIsOnePackage) {
    auto st = stanza("bullseye-image.stanza");
    EXPECT_EQ(st.package, "linux-image-5.10.0-32-amd64");
    EXPECT_EQ(st.version, "5.10.223-1");
    EXPECT_THAT(kernel_parts(st), ::testing::ElementsAre("linux-image-5.10.0-32-amd64"))
        << "linux-base (the tools package) is not a part";
    EXPECT_THAT(kernel_parts(stanza("trixie-image.stanza")),
                ::testing::ElementsAre("linux-image-6.12.117+deb13-amd64"));
}

TEST(PackageStanza, SidImageIsSplit) {
    auto st = stanza("sid-image.stanza");
    EXPECT_EQ(st.version, "7.2.13-1");
    EXPECT_THAT(kernel_parts(st),
                ::testing::ElementsAre("linux-image-7.2.13+deb14-amd64", "linux-base-7.2.13+deb14-amd64",
                                       "linux-binary-7.2.13+deb14-amd64", "linux-modules-7.2.13+deb14-amd64"));
}

TEST(PackageStanza, ContinuationLinesAndAlternatives) {
    auto st = parse_package_stanza(
        "Package: linux-image-x\nVersion: 1\nDepends: a (>= 1) | b,\n c:any,\n"
        " linux-modules-9.9 (= 1)\nDescription: d\n\nPackage: other\n");
    ASSERT_TRUE(st);
    EXPECT_THAT(st->depends, ::testing::ElementsAre("a", "c", "linux-modules-9.9"));
    EXPECT_EQ(parse_package_stanza("W: no such package\n"), std::nullopt);
}

fs::path copy_tree(const std::string& name, const TempDir& dir) {
    fs::copy(fixture(name), dir.path() / name, fs::copy_options::recursive);
    return dir.path() / name;
}

TEST(NormalizeKernelTree, ClassicIsLeftAsItIs) {
    TempDir dir;
    auto root = copy_tree("tree-classic", dir);
    EXPECT_EQ(normalize_kernel_tree(root), "5.10.0-32-amd64");
    EXPECT_FALSE(fs::is_symlink(root / "boot" / "vmlinuz-5.10.0-32-amd64"));
    EXPECT_FALSE(fs::exists(root / "usr"));
}

TEST(NormalizeKernelTree, SplitGetsTheClassicPaths) {
    TempDir dir;
    auto root = copy_tree("tree-split", dir);
    const std::string rel = "7.2.13+deb14-amd64";
    EXPECT_EQ(normalize_kernel_tree(root), rel);
    EXPECT_TRUE(fs::is_symlink(root / "boot" / ("vmlinuz-" + rel)));
    EXPECT_EQ(read_file(root / "boot" / ("vmlinuz-" + rel)), "fixture: stands in for the bzImage\n");
    EXPECT_THAT(read_file(root / "boot" / ("config-" + rel)), HasSubstr("CONFIG_MHP_MEMMAP_ON_MEMORY=y"));
    EXPECT_TRUE(fs::exists(root / "lib" / "modules" / rel / "kernel/drivers/virtio/virtio_mem.ko.xz"));
    EXPECT_EQ(fs::read_symlink(root / "lib" / "modules" / rel), fs::path("../../usr/lib/modules") / rel)
        << "relative, so the cache entry can move";
    EXPECT_EQ(normalize_kernel_tree(root), rel) << "a second pass changes nothing";
}

TEST(NormalizeKernelTree, NoKernelSaysSo) {
    TempDir dir;
    fs::create_directories(dir.path() / "usr/lib/modules/7.2/kernel");
    try {
        (void)normalize_kernel_tree(dir.path());
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("hold no kernel"));
    }
}

TEST(KernelConfig, ReadsOptions) {
    TempDir dir;
    auto root = copy_tree("tree-split", dir);
    (void)normalize_kernel_tree(root);
    KernelImage k;
    k.config = root / "boot/config-7.2.13+deb14-amd64";
    EXPECT_EQ(kernel_config_has(k, "MHP_MEMMAP_ON_MEMORY"), true);
    EXPECT_EQ(kernel_config_has(k, "VIRTIO_MEM"), true) << "=m counts";
    k.config = fixture("tree-classic/boot/config-5.10.0-32-amd64");
    EXPECT_EQ(kernel_config_has(k, "MHP_MEMMAP_ON_MEMORY"), false);
    k.config.clear();
    EXPECT_EQ(kernel_config_has(k, "MHP_MEMMAP_ON_MEMORY"), std::nullopt);
}

TEST(AptConfig, OwnSourcesNeverTheSystems) {
    EXPECT_EQ(debian_mirror_from_sources("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n"
                                         "Types: deb\nURIs: http://deb.debian.org/debian-security\n",
                                         false),
              "http://deb.debian.org/debian");
    EXPECT_EQ(
        debian_mirror_from_sources("URIs: http://m.example/debian/\nURIs: http://s.example/debian-security\n", true),
        "http://s.example/debian-security");
    EXPECT_EQ(
        debian_mirror_from_sources("deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n", false),
        "http://m.example/debian");
    EXPECT_EQ(debian_mirror_from_sources("deb http://m.example/deb;rm -rf bookworm main\n", false),
              "http://deb.debian.org/debian")
        << "a URI with shell characters is not taken";
    EXPECT_EQ(apt_sources_list("http://m/debian", "http://m/debian-security", "bullseye"),
              "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m/debian bullseye main\n"
              "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m/debian-security "
              "bullseye-security main\n");
    EXPECT_THAT(apt_sources_list("http://m/debian", "http://m/debian-security", "sid"), Not(HasSubstr("security")));
    auto opts = apt_options("/c/apt/sid");
    std::string all;
    for (const auto& o : opts) all += o + " ";
    EXPECT_THAT(all, HasSubstr("Dir::Etc::SourceList=/c/apt/sid/sources.list"));
    EXPECT_THAT(all, HasSubstr("Dir::Etc::SourceParts=/dev/null"));
    EXPECT_THAT(all, HasSubstr("Dir::State::Lists=/c/apt/sid/lists"));
    EXPECT_THAT(all, HasSubstr("Dir::Cache=/c/apt/sid/cache"));
    EXPECT_THAT(all, HasSubstr("Dir::State::status=/c/apt/sid/status")) << "the host's installed kernels stay out";
}

TEST(ReleaseFromBootDir, FindsVmlinuz) {
    TempDir dir;
    for (const char* f : {"System.map-6.1.0-56-amd64", "config-6.1.0-56-amd64", "vmlinuz-6.1.0-56-amd64"})
        write_file(dir.path() / f, "x");
    EXPECT_EQ(release_from_boot_dir(dir.path()), "6.1.0-56-amd64");
}

TEST(ReleaseFromBootDir, NoneOrMissingDir) {
    TempDir dir;
    write_file(dir.path() / "config-6.12.43+deb12-amd64", "x");
    EXPECT_EQ(release_from_boot_dir(dir.path()), std::nullopt);
    EXPECT_EQ(release_from_boot_dir(dir.path() / "nope"), std::nullopt);
}

TEST(KernelCache, PlainImageNeedsNoDownload) {
    TempDir dir;
    write_file(dir.path() / "bzImage", "not really a kernel");
    write_file(dir.path() / "config", "CONFIG_MEMORY_HOTPLUG=y\n");
    KernelCache cache(dir.path() / "cache");
    auto k = cache.ensure((dir.path() / "bzImage").string());
    EXPECT_EQ(k.vmlinuz, dir.path() / "bzImage");
    EXPECT_EQ(k.config, dir.path() / "config");
    EXPECT_EQ(k.release, "custom");
    EXPECT_TRUE(k.package.empty());
    EXPECT_TRUE(k.modules_dir.empty());
    EXPECT_TRUE(fs::is_directory(dir.path() / "cache"));
}

TEST(KernelCache, MissingImageIsAUsageError) {
    TempDir dir;
    KernelCache cache(dir.path() / "cache");
    EXPECT_THROW((void)cache.ensure((dir.path() / "bzImage").string()), UsageError);
    EXPECT_THROW((void)cache.ensure(dir.path().string()), UsageError);  // a directory
    EXPECT_THROW((void)cache.ensure("no-such-kernel"), UsageError);
}

// ---- --kernel patched (kernel-patches/build.sh) ------------------------------

TEST(ClassifyKernelSpec, PatchedIsItsOwnKindWithItsSeries) {
    expect_request("patched", Kind::Patched, "6.1");  // the default series, as build.sh's
    expect_request("patched-6.1", Kind::Patched, "6.1");
    expect_request("patched-7.2", Kind::Patched, "7.2");
    EXPECT_FALSE(classify_kernel_spec("patched-7.2").unpatched);
}

// The events' cost is measured against the same source and lab config
// without the patches.
TEST(ClassifyKernelSpec, UnpatchedIsThePatchedSeriesWithoutItsPatches) {
    const auto r = classify_kernel_spec("unpatched-7.2");
    EXPECT_EQ(r.kind, Kind::Patched);
    EXPECT_EQ(r.name, "7.2");
    EXPECT_TRUE(r.unpatched);
    for (const char* bad : {"unpatched-9.9", "unpatched-", "unpatched-x"}) {
        try {
            (void)classify_kernel_spec(bad);
            FAIL() << bad << ": no error";
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), HasSubstr("unpatched-7.2")) << bad << ": " << e.what();
        }
    }
}

// build.sh keys the baseline apart from the patched kernel.
TEST(PatchedKernelScript, TheUnpatchedBaselineHasItsOwnCacheEntry) {
    TempDir dir;
    const auto script = patched_kernel_script().string();
    const std::vector<std::string> env = {"MEMHP_CACHE_DIR=" + dir.path().string()};
    auto patched = run({"bash", script, "--series", "7.2", "--print-dir"}, {.env = env});
    auto base = run({"bash", script, "--series", "7.2", "--unpatched", "--print-dir"}, {.env = env});
    EXPECT_EQ(patched.exit_code, 3) << patched.err;  // not built in this empty cache
    EXPECT_EQ(base.exit_code, 3) << base.err;
    EXPECT_NE(trim(patched.out), trim(base.out));
    EXPECT_THAT(base.out, HasSubstr("-unpatched-"));
    auto check = run({"bash", script, "--series", "7.2", "--unpatched", "--check"}, {.env = env});
    EXPECT_NE(check.exit_code, 0);
    EXPECT_THAT(check.err, HasSubstr("--unpatched builds the baseline"));
}

TEST(ClassifyKernelSpec, UnknownPatchedSeriesIsAUsageErrorNamingTheSeries) {
    for (const char* bad : {"patched-9.9", "patched-", "patched-7.2/..", "patched-x"}) {
        try {
            (void)classify_kernel_spec(bad);
            FAIL() << bad << ": no error";
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), HasSubstr("patched-7.2")) << bad << ": " << e.what();
        }
    }
}

TEST(PatchedKernelEntry, ReadsVersionAndRelease) {
    auto k = patched_kernel_entry("/c/patched-kernel/6.1.192-2-abc",
                                  "source linux-source-6.1 6.1.192-2\nrelease 6.1.192\nseries a.patch\n");
    EXPECT_EQ(k.version, "6.1.192-2");
    EXPECT_EQ(k.release, "6.1.192");
    EXPECT_EQ(k.vmlinuz, fs::path("/c/patched-kernel/6.1.192-2-abc/bzImage"));
    EXPECT_EQ(k.config, fs::path("/c/patched-kernel/6.1.192-2-abc/config"));
    EXPECT_TRUE(k.modules_dir.empty()) << "everything is built in: no modules to load";
}

// A stand-in for kernel-patches/build.sh with the same interface.
class PatchedKernel : public ::testing::Test {
protected:
    void SetUp() override {
        entry_ = dir_.path() / "entry";
        ::setenv("MEMHP_KERNEL_PATCHES", dir_.path().c_str(), 1);
    }
    void TearDown() override { ::unsetenv("MEMHP_KERNEL_PATCHES"); }
    void script(const std::string& build_body) {
        // Records the series it was asked for; --series comes first.
        write_file(
            dir_.path() / "build.sh",
            "[ \"$1\" = --series ] || { echo 'memhp-kernel: no --series' >&2; exit 2; }\n"
            "echo \"$2\" >> " +
                (dir_.path() / "asked").string() +
                "\n"
                "entry=" +
                entry_.string() +
                "-$2\n"
                "if [ \"$3\" = --print-dir ]; then echo $entry; [ -f $entry/bzImage ] && exit 0 || exit 3; fi\n" +
                build_body);
    }
    TempDir dir_;
    fs::path entry_;
};

TEST_F(PatchedKernel, BuildsOnceWithProgressThenUsesTheCache) {
    script(
        "echo 'memhp-kernel: applying 0001.patch' >&2\n"
        "echo 'make noise that is not progress' >&2\n"
        "mkdir -p $entry && echo img > $entry/bzImage && echo y > $entry/config\n"
        "printf 'source linux-source-6.1 6.1.192-2\\nrelease 6.1.192\\n' > $entry/memhp-kernel.txt\n"
        "echo $entry\n");
    std::vector<std::string> progress;
    KernelCache cache(dir_.path() / "cache", [&](const std::string& s) { progress.push_back(s); });
    auto k = cache.ensure("patched");
    EXPECT_EQ(k.vmlinuz, fs::path(entry_.string() + "-6.1") / "bzImage");
    EXPECT_EQ(k.release, "6.1.192");
    EXPECT_EQ(k.spec, "patched");
    ASSERT_EQ(progress.size(), 2u);
    EXPECT_THAT(progress[0], HasSubstr("building the patched 6.1 kernel"));
    EXPECT_EQ(progress[1], "applying 0001.patch");

    progress.clear();
    auto again = cache.ensure("patched");
    EXPECT_EQ(again.vmlinuz, k.vmlinuz);
    EXPECT_TRUE(progress.empty()) << "cached: no build";
    EXPECT_EQ(read_file(dir_.path() / "asked"), "6.1\n6.1\n6.1\n") << "print-dir, build, print-dir";
}

TEST_F(PatchedKernel, Patched72AsksBuildShForItsSeriesAndHasItsOwnEntry) {
    fs::create_directories(dir_.path() / "7.2");
    write_file(dir_.path() / "7.2" / "series", "0001-x.patch\n");
    script(
        "mkdir -p $entry && echo img > $entry/bzImage && echo y > $entry/config\n"
        "printf 'source linux-source-7.2 7.2.13-1\\nseries_version 7.2\\nrelease 7.2.13\\n' > "
        "$entry/memhp-kernel.txt\n"
        "echo $entry\n");
    KernelCache cache(dir_.path() / "cache");
    auto k = cache.ensure("patched-7.2");
    EXPECT_EQ(k.vmlinuz, fs::path(entry_.string() + "-7.2") / "bzImage");
    EXPECT_EQ(k.release, "7.2.13");
    EXPECT_EQ(k.version, "7.2.13-1");
    EXPECT_EQ(k.spec, "patched-7.2");
    EXPECT_EQ(read_file(dir_.path() / "asked"), "7.2\n7.2\n");
}

TEST_F(PatchedKernel, FailedBuildSaysWhy) {
    script("echo 'memhp-kernel: error: the kernel build failed (log: /x/build.log)' >&2; exit 1\n");
    KernelCache cache(dir_.path() / "cache");
    try {
        (void)cache.ensure("patched");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("building the patched 6.1 kernel failed"));
        EXPECT_THAT(e.what(), HasSubstr("/x/build.log"));
    }
}

TEST_F(PatchedKernel, MissingScriptNamesTheFix) {
    KernelCache cache(dir_.path() / "cache");
    try {
        (void)cache.ensure("patched");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("MEMHP_KERNEL_PATCHES"));
    }
}

}  // namespace
}  // namespace memhp::lab
