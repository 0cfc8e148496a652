// SPDX-License-Identifier: Apache-2.0
// What of the host a guest sees: the share plan, the staged /etc and the
// table the guest's init reads (the VM tier checks a real guest's view).
#include "memhp/lab/shares.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace fs = std::filesystem;
using namespace memhp;
using namespace memhp::lab;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

namespace {

std::vector<fs::path> guests(const SharePlan& p) {
    std::vector<fs::path> g;
    for (const auto& s : p.shares) g.push_back(s.guest);
    return g;
}

// A merged-/usr root like Debian 12's.
struct Root {
    TempDir dir{"memhp-shares"};
    fs::path root = dir.path();
    Root() {
        fs::create_directories(root / "usr/bin");
        fs::create_directories(root / "usr/lib");
        fs::create_symlink("usr/bin", root / "bin");
        fs::create_symlink("usr/lib", root / "lib");
        fs::create_symlink("usr/sbin", root / "sbin");
    }
};

}  // namespace

TEST(PlanShares, NeverTheRootOnlyWhatTheGuestRuns) {
    Root r;
    const auto plan = plan_shares(r.root, "/work/b/bin", "/cache/k/lib/modules/6.1", "/run/x/guest-etc");
    EXPECT_THAT(guests(plan), ElementsAre("/cache/k/lib/modules/6.1", "/etc", "/usr", "/work/b/bin"))
        << "sorted: a parent mounts before what lies inside it";
    for (const auto& s : plan.shares) {
        EXPECT_NE(s.host, r.root);
        EXPECT_NE(s.host, fs::path("/"));
    }
    EXPECT_EQ(plan.shares[1].host, "/run/x/guest-etc") << "/etc is the staged copy, not the host's";
    EXPECT_EQ(plan.shares[2].host, r.root / "usr");
    EXPECT_THAT(plan.links, ElementsAre(Field(&RootLink::name, "bin"), Field(&RootLink::name, "sbin"),
                                        Field(&RootLink::name, "lib")));
    EXPECT_EQ(plan.links[0].target, "usr/bin");
}

// An installed memhp (the Debian package's /usr/lib/memhp) is under /usr on
// both sides: the /usr share carries it. The host's own root, as Guest::start
// plans it.
TEST(PlanShares, ADirectoryInsideAShareIsNotSharedTwice) {
    const auto plan = plan_shares("/", "/usr/lib/memhp", "", "/s/etc");
    EXPECT_THAT(guests(plan), ElementsAre("/etc", "/usr")) << "the binaries under /usr and no modules";
}

TEST(PlanShares, AnUnmergedRootSharesItsTopDirectories) {
    TempDir dir("memhp-shares");
    fs::create_directories(dir.path() / "usr");
    fs::create_directories(dir.path() / "bin");
    fs::create_directories(dir.path() / "lib64");
    const auto plan = plan_shares(dir.path(), "/b/bin", "", "/s/etc");
    EXPECT_THAT(guests(plan), ElementsAre("/b/bin", "/bin", "/etc", "/lib64", "/usr"));
    EXPECT_THAT(plan.links, IsEmpty());
}

// trixie's and sid's kernel packages, extracted, have lib/modules/VERSION as
// a link into usr/lib/modules: the guest must find the modules at the path
// the host names (insmod of virtio_mem failed when only the link's target
// was shared), with the real directory behind it.
TEST(PlanShares, ModulesBehindALinkAreMountedWhereTheHostNamesThem) {
    TempDir dir("memhp-shares");
    const auto real = dir.path() / "k/usr/lib/modules/6.12";
    fs::create_directories(real);
    fs::create_directories(dir.path() / "k/lib/modules");
    fs::create_symlink("../../usr/lib/modules/6.12", dir.path() / "k/lib/modules/6.12");
    const auto named = dir.path() / "k/lib/modules/6.12";
    const auto plan = plan_shares("/", "/b/bin", named, "/s/etc");
    const auto it =
        std::find_if(plan.shares.begin(), plan.shares.end(), [&](const HostShare& s) { return s.guest == named; });
    ASSERT_NE(it, plan.shares.end()) << share_table(plan);
    EXPECT_EQ(it->host, fs::canonical(real));
}

TEST(PlanShares, APathWithANewlineIsRefused) {
    Root r;
    EXPECT_THROW((void)plan_shares(r.root, "/work/a\nb/bin", "", "/s/etc"), Error);
}

TEST(ShareTable, LinksThenSharesOnePerLine) {
    SharePlan p;
    p.links = {{"bin", "usr/bin"}};
    p.shares = {{"memhp0", "/usr", "/usr"}, {"memhp1", "/x", "/home/a b/bin"}};
    EXPECT_EQ(share_table(p), "link bin usr/bin\nshare memhp0 /usr\nshare memhp1 /home/a b/bin\n");
}

TEST(StageGuestEtc, CopiesTheAllowListAndNoSecrets) {
    TempDir from("memhp-etc"), to("memhp-etc");
    const auto& f = from.path();
    write_file(f / "passwd", "root:x:0:0::/root:/bin/sh\n");
    write_file(f / "shadow", "root:$y$secret:::\n");  // not on the list
    write_file(f / "hosts", "127.0.0.1 localhost\n");
    ::chmod((f / "hosts").c_str(), 0600);  // on the list, but not world-readable: a secret here
    fs::create_directories(f / "alternatives");
    fs::create_symlink("/usr/bin/mawk", f / "alternatives/awk");
    fs::create_directories(f / "ssh");
    write_file(f / "ssh/ssh_host_ed25519_key", "PRIVATE");
    fs::create_symlink("../usr/lib/os-release", f / "os-release");
    stage_guest_etc(f, to.path());
    const auto& t = to.path();
    EXPECT_EQ(read_file(t / "passwd"), "root:x:0:0::/root:/bin/sh\n");
    EXPECT_FALSE(fs::exists(t / "shadow"));
    EXPECT_FALSE(fs::exists(t / "hosts"));
    EXPECT_FALSE(fs::exists(t / "ssh"));
    ASSERT_TRUE(fs::is_symlink(t / "alternatives/awk"));
    EXPECT_EQ(fs::read_symlink(t / "alternatives/awk"), "/usr/bin/mawk");
    EXPECT_EQ(fs::read_symlink(t / "os-release"), "../usr/lib/os-release");
}

TEST(VirtfsArg, ReadOnlyAndCommasEscaped) {
    EXPECT_EQ(virtfs_arg("memhp3", "/a,b"),
              "local,path=/a,,b,mount_tag=memhp3,security_model=none,readonly=on,multidevs=remap");
}
