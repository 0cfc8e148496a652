#include "memhp/lab/kernel_cache.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace memhp::lab {
namespace {

using ::testing::HasSubstr;
using Kind = KernelRequest::Kind;

void expect_request(std::string_view spec, Kind kind, const std::string& name) {
    auto r = classify_kernel_spec(spec);
    EXPECT_EQ(r.kind, kind) << spec;
    EXPECT_EQ(r.name, name) << spec;
}

TEST(ClassifyKernelSpec, SeriesAreMetaPackages) {
    expect_request("6.1", Kind::MetaPackage, "linux-image-amd64");
    expect_request("default", Kind::MetaPackage, "linux-image-amd64");
    expect_request("6.12", Kind::MetaPackage, "linux-image-6.12-amd64");
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
    for (const char* bad : {"latest", "6", "6.1.0", "v6.1", "linux-image-", "linux-image-6.1_amd64", "6.1 "}) {
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

}  // namespace
}  // namespace memhp::lab
