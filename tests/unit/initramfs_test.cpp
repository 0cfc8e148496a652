// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/initramfs.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "memhp/error.hpp"

namespace memhp::lab {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// modules.dep of Debian 12's 6.1 kernel (uncompressed .ko), the part that matters.
constexpr const char* kDep61 =
    R"(kernel/arch/x86/crypto/aesni-intel.ko: kernel/crypto/crypto_simd.ko kernel/crypto/cryptd.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/overlayfs/overlay.ko:
kernel/crypto/cryptd.ko:
kernel/crypto/crypto_simd.ko: kernel/crypto/cryptd.ko
)";
constexpr const char* kBuiltin61 = R"(kernel/arch/x86/kernel/msr.ko
kernel/fs/ext4/ext4.ko
)";

// 6.12 (.ko.xz): virtio core and virtio_pci are built in, fscache is part of netfs.
constexpr const char* kDep612 = R"(kernel/drivers/char/virtio_console.ko.xz:
kernel/net/9p/9pnet.ko.xz:
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz
kernel/fs/netfs/netfs.ko.xz:
kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/fs/overlayfs/overlay.ko.xz:
kernel/drivers/block/virtio_blk.ko.xz:
)";
constexpr const char* kBuiltin612 = R"(kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci.ko
kernel/fs/ext4/ext4.ko
)";

// Dependencies of each module path, as modules.dep states them.
std::map<std::string, std::vector<std::string>> deps_by_path(const std::string& dep) {
    std::map<std::string, std::vector<std::string>> out;
    std::istringstream in(dep);
    std::string line;
    while (std::getline(in, line)) {
        auto colon = line.find(':');
        std::istringstream rest(line.substr(colon + 1));
        auto& deps = out[line.substr(0, colon)];
        for (std::string d; rest >> d;) deps.push_back(d);
    }
    return out;
}

// Every module at most once, and after everything it depends on.
void expect_valid_order(const std::vector<std::string>& order, const std::string& dep) {
    auto deps = deps_by_path(dep);
    std::set<std::string> seen;
    for (const auto& m : order) {
        EXPECT_TRUE(seen.insert(m).second) << m << " appears twice";
        ASSERT_TRUE(deps.count(m)) << m << " is not in modules.dep";
        for (const auto& d : deps[m]) EXPECT_TRUE(seen.count(d)) << d << " must come before " << m;
    }
}

TEST(ModuleName, StripsDirectoryAndExtension) {
    EXPECT_EQ(module_name("kernel/fs/9p/9p.ko.xz"), "9p");
    EXPECT_EQ(module_name("kernel/fs/9p/9p.ko"), "9p");
    EXPECT_EQ(module_name("kernel/net/9p/9pnet_virtio.ko.zst"), "9pnet_virtio");
    EXPECT_EQ(module_name("overlay.ko.gz"), "overlay");
    EXPECT_EQ(module_name("virtio_pci"), "virtio_pci");
}

TEST(ModuleName, DashesBecomeUnderscores) {
    EXPECT_EQ(module_name("kernel/arch/x86/crypto/aesni-intel.ko"), "aesni_intel");
    EXPECT_EQ(module_name("virtio-pci"), "virtio_pci");
}

TEST(ResolveModules, Debian61AllFromModules) {
    auto order = resolve_module_load_order(kDep61, kBuiltin61, kGuestModules);
    expect_valid_order(order, kDep61);
    EXPECT_THAT(order,
                UnorderedElementsAre(
                    "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
                    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
                    "kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/char/virtio_console.ko",
                    "kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet_virtio.ko", "kernel/fs/netfs/netfs.ko",
                    "kernel/fs/fscache/fscache.ko", "kernel/fs/9p/9p.ko", "kernel/fs/overlayfs/overlay.ko"));
    // Wanted modules keep their relative order when nothing forces otherwise.
    auto pos = [&](const std::string& p) { return std::find(order.begin(), order.end(), p) - order.begin(); };
    EXPECT_LT(pos("kernel/drivers/virtio/virtio_pci.ko"), pos("kernel/fs/overlayfs/overlay.ko"));
}

TEST(ResolveModules, Debian612SkipsBuiltins) {
    auto order = resolve_module_load_order(kDep612, kBuiltin612, kGuestModules);
    expect_valid_order(order, kDep612);
    EXPECT_THAT(order, UnorderedElementsAre("kernel/drivers/char/virtio_console.ko.xz", "kernel/net/9p/9pnet.ko.xz",
                                            "kernel/net/9p/9pnet_virtio.ko.xz", "kernel/fs/netfs/netfs.ko.xz",
                                            "kernel/fs/9p/9p.ko.xz", "kernel/fs/overlayfs/overlay.ko.xz"));
}

TEST(ResolveModules, OnlyWhatIsWanted) {
    EXPECT_THAT(resolve_module_load_order(kDep61, "", {"9p"}),
                ::testing::ElementsAre("kernel/net/9p/9pnet.ko", "kernel/fs/netfs/netfs.ko",
                                       "kernel/fs/fscache/fscache.ko", "kernel/fs/9p/9p.ko"));
    EXPECT_TRUE(resolve_module_load_order(kDep612, kBuiltin612, {"virtio_pci"}).empty());
    EXPECT_TRUE(resolve_module_load_order(kDep61, "", {}).empty());
}

TEST(ResolveModules, WantedByPathOrDashedName) {
    EXPECT_EQ(resolve_module_load_order(kDep61, "", {"kernel/fs/overlayfs/overlay.ko"}),
              std::vector<std::string>{"kernel/fs/overlayfs/overlay.ko"});
    auto order = resolve_module_load_order(kDep61, "", {"aesni-intel"});
    ASSERT_EQ(order.size(), 3u);
    EXPECT_EQ(order.back(), "kernel/arch/x86/crypto/aesni-intel.ko");
}

TEST(ResolveModules, MissingModuleThrowsNamingIt) {
    try {
        (void)resolve_module_load_order(kDep612, kBuiltin612, {"virtio_console", "vmw_vsock_virtio_transport"});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'vmw_vsock_virtio_transport'"));
    }
}

TEST(ResolveModules, MissingDependencyThrowsNamingIt) {
    // 9p's fscache dependency is neither a module nor built in.
    const std::string dep = "kernel/fs/9p/9p.ko: kernel/fs/fscache/fscache.ko\n";
    try {
        (void)resolve_module_load_order(dep, "", {"9p"});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'fscache'"));
    }
}

TEST(ResolveModules, OneMissingWantedModuleFailsTheWholeSet) {
    // A 6.1 tree without overlay.ko (OVERLAY_FS not enabled).
    std::string dep = kDep61;
    dep.erase(dep.find("kernel/fs/overlayfs/overlay.ko:"), std::string("kernel/fs/overlayfs/overlay.ko:\n").size());
    try {
        (void)resolve_module_load_order(dep, kBuiltin61, kGuestModules);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("'overlay'"));
    }
}

TEST(ResolveModules, CycleIsAnError) {
    const std::string dep = "a.ko: b.ko\nb.ko: a.ko\n";
    EXPECT_THROW((void)resolve_module_load_order(dep, "", {"a"}), Error);
}

TEST(ResolveModules, ToleratesBlankLinesAndSpaces) {
    const std::string dep = "\nkernel/fs/overlayfs/overlay.ko.xz:\n\n";
    const std::string builtin = "\n  kernel/drivers/virtio/virtio.ko  \n\n";
    EXPECT_EQ(resolve_module_load_order(dep, builtin, {"overlay", "virtio"}),
              std::vector<std::string>{"kernel/fs/overlayfs/overlay.ko.xz"});
}

}  // namespace
}  // namespace memhp::lab
