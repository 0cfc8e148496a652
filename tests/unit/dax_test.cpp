// SPDX-License-Identifier: Apache-2.0
// dax/kmem in the lab: the guest layout memmap= needs, the module load order
// from modules.dep, ndctl's JSON (untrusted), the blocks kmem adds.
#include "memhp/lab/dax.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "memhp/process.hpp"

namespace memhp::lab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
constexpr std::uint64_t kMiB = 1ULL << 20, kGiB = 1ULL << 30;

TEST(DaxLayout, OneGiBGoesAt4GiBOnNode1) {
    const auto l = dax_layout(kGiB);
    EXPECT_EQ(l.pmem_bytes, kGiB + 128 * kMiB) << "one block for the namespace's info block and memmap";
    // 2 GiB + 1152 MiB >= 2.75 GiB: q35 keeps 2 GiB low and puts the rest (node 1) at 4 GiB.
    EXPECT_EQ(l.pmem_start, 4 * kGiB);
    EXPECT_THAT(l.node_mem, ElementsAre(2 * kGiB, kGiB + 128 * kMiB));
    EXPECT_EQ(l.memmap_arg, "memmap=1152M!4G");
}

TEST(DaxLayout, SmallRangesGoAbove4GiBToo) {
    // 2 GiB + 256 MiB < 2.75 GiB would leave all guest RAM low and the
    // range at 2 GiB, where ndctl cannot make it devdax: node 0 grows to
    // 2.5 GiB so that the guest is 2.75 GiB and q35 splits it at 2 GiB.
    const auto l = dax_layout(128 * kMiB);
    EXPECT_EQ(l.pmem_start, 4 * kGiB + 512 * kMiB);
    EXPECT_THAT(l.node_mem, ElementsAre(2560 * kMiB, 256 * kMiB));
    EXPECT_EQ(l.node_mem[0] + l.node_mem[1], 0xb0000000ULL);
    EXPECT_EQ(l.memmap_arg, "memmap=256M!4608M");
    // At the q35 boundary node 0 keeps its 2 GiB.
    EXPECT_EQ(dax_layout(640 * kMiB).pmem_start, 4 * kGiB);
    EXPECT_THAT(dax_layout(640 * kMiB).node_mem, ElementsAre(2 * kGiB, 768 * kMiB));
    EXPECT_EQ(dax_layout(512 * kMiB).pmem_start, 4 * kGiB + 128 * kMiB);
}

TEST(DaxLayout, BadSizesAreRefused) {
    EXPECT_THROW((void)dax_layout(0), UsageError);
    EXPECT_THROW((void)dax_layout(100 * kMiB), UsageError);
    EXPECT_THROW((void)dax_layout(65 * kGiB), UsageError);
    try {
        (void)dax_layout(200 * kMiB);
    } catch (const UsageError& e) {
        EXPECT_THAT(e.what(), HasSubstr("multiple of 128M"));
    }
}

TEST(DaxLayout, TheGuestCommandLineCarriesIt) {
    GuestConfig cfg;
    configure_dax_guest(cfg, kGiB);
    EXPECT_NO_THROW(validate(cfg));
    EXPECT_THAT(cfg.node_mem, ElementsAre(2 * kGiB, kGiB + 128 * kMiB));
    EXPECT_THAT(kernel_cmdline(cfg, "/a", "/w"), HasSubstr(" memmap=1152M!4G"));
    const auto argv = qemu_command(cfg, "/k", "/i", "/tmp/run", "/a", "/w", {});
    std::string joined;
    for (const auto& a : argv) joined += a + " ";
    EXPECT_THAT(joined, HasSubstr("memory-backend-ram,id=boot1,size=1152M"));
    EXPECT_THAT(joined, HasSubstr("-m 3200M,"));
}

// Lines of Debian's modules.dep (6.12, and 5.10's older dax_pmem split).
constexpr const char* kDep612 =
    "kernel/drivers/acpi/nfit/nfit.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz\n"
    "kernel/drivers/dax/hmem/dax_hmem.ko.xz:\n"
    "kernel/drivers/dax/device_dax.ko.xz:\n"
    "kernel/drivers/dax/kmem.ko.xz:\n"
    "kernel/drivers/dax/dax_pmem.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz\n"
    "kernel/drivers/nvdimm/libnvdimm.ko.xz:\n"
    "kernel/drivers/nvdimm/nd_pmem.ko.xz: kernel/drivers/nvdimm/nd_btt.ko.xz kernel/drivers/nvdimm/libnvdimm.ko.xz\n"
    "kernel/drivers/nvdimm/nd_btt.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz\n"
    "kernel/drivers/nvdimm/nd_e820.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz\n";
constexpr const char* kDep510 =
    "kernel/drivers/dax/pmem/dax_pmem.ko: kernel/drivers/dax/pmem/dax_pmem_core.ko kernel/drivers/nvdimm/libnvdimm.ko\n"
    "kernel/drivers/dax/pmem/dax_pmem_core.ko: kernel/drivers/nvdimm/libnvdimm.ko\n"
    "kernel/drivers/dax/device_dax.ko:\n"
    "kernel/drivers/dax/kmem.ko:\n"
    "kernel/drivers/nvdimm/libnvdimm.ko:\n"
    "kernel/drivers/nvdimm/nd_pmem.ko: kernel/drivers/nvdimm/nd_btt.ko kernel/drivers/nvdimm/libnvdimm.ko\n"
    "kernel/drivers/nvdimm/nd_btt.ko: kernel/drivers/nvdimm/libnvdimm.ko\n"
    "kernel/drivers/nvdimm/nd_e820.ko: kernel/drivers/nvdimm/libnvdimm.ko\n";

TEST(ModuleLoadOrder, DependenciesFirstEachOnce) {
    EXPECT_THAT(module_load_order(kDep612, dax_modules()),
                ElementsAre("kernel/drivers/nvdimm/libnvdimm.ko.xz", "kernel/drivers/nvdimm/nd_e820.ko.xz",
                            "kernel/drivers/nvdimm/nd_btt.ko.xz", "kernel/drivers/nvdimm/nd_pmem.ko.xz",
                            "kernel/drivers/dax/dax_pmem.ko.xz", "kernel/drivers/dax/device_dax.ko.xz",
                            "kernel/drivers/dax/kmem.ko.xz"));
    EXPECT_THAT(module_load_order(kDep510, {"dax_pmem"}),
                ElementsAre("kernel/drivers/nvdimm/libnvdimm.ko", "kernel/drivers/dax/pmem/dax_pmem_core.ko",
                            "kernel/drivers/dax/pmem/dax_pmem.ko"));
}

TEST(ModuleLoadOrder, AMissingModuleIsNamed) {
    try {
        (void)module_load_order("kernel/drivers/nvdimm/libnvdimm.ko:\n", dax_modules());
        FAIL() << "no nd_e820 in that modules.dep";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("no module nd_e820"));
    }
    EXPECT_THROW((void)module_load_order("", {"kmem"}), Error);
    // Garbage lines are skipped, not trusted.
    EXPECT_THAT(module_load_order(":\nno colon here\nkernel/kmem.ko:\n", {"kmem"}), ElementsAre("kernel/kmem.ko"));
}

TEST(ModuleLoadOrder, ALoopIsAnErrorNotAHang) {
    EXPECT_THROW((void)module_load_order("a.ko: b.ko\nb.ko: a.ko\n", {"a"}), Error);
}

// What Debian's ndctl 76.1 printed for create-namespace -f -e namespace0.0
// -m devdax in a 6.12 lab guest (the 1152M memmap= range; uuid as printed).
constexpr const char* kNdctlOut = R"json({
  "dev":"namespace0.0",
  "mode":"devdax",
  "map":"dev",
  "size":1186988032,
  "uuid":"26dfa175-0ba4-4718-a47d-8803a10b0a0a",
  "daxregion":{
    "id":0,
    "size":1186988032,
    "align":2097152,
    "devices":[
      {
        "chardev":"dax0.0",
        "size":1186988032,
        "target_node":1,
        "align":2097152,
        "mode":"devdax"
      }
    ]
  },
  "align":2097152
}
)json";

TEST(NdctlJson, TheNamespaceAndItsDevice) {
    const auto ns = parse_ndctl_namespace(kNdctlOut);
    EXPECT_EQ(ns.dev, "namespace0.0");
    EXPECT_EQ(ns.mode, "devdax");
    EXPECT_EQ(ns.chardev, "dax0.0");
}

TEST(NdctlJson, HostileOutputIsRefused) {
    auto refused = [](const std::string& text, const std::string& why) {
        try {
            (void)parse_ndctl_namespace(text);
            ADD_FAILURE() << "accepted: " << text.substr(0, 200);
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr(why)) << text.substr(0, 200);
        }
    };
    refused("", "did not print a JSON object");
    refused("[1,2]", "did not print a JSON object");
    refused("{\"dev\":\"namespace0.0\"", "did not print a JSON object");
    refused(R"({"dev":1,"mode":"devdax"})", "no string 'dev'");
    refused(R"({"dev":"../../../etc","mode":"devdax"})", "not namespaceN.M");
    refused(R"({"dev":"namespace0.0","mode":"fsdax"})", "not devdax");
    refused(R"({"dev":"namespace0.0","mode":"devdax"})", "no 'daxregion'");
    refused(R"({"dev":"namespace0.0","mode":"devdax","daxregion":{"devices":[]}})", "exactly one");
    refused(R"({"dev":"namespace0.0","mode":"devdax","daxregion":{"devices":[7]}})", "not a JSON object");
    refused(R"({"dev":"namespace0.0","mode":"devdax","daxregion":{"devices":[{"chardev":"dax0.0/../../x"}]}})",
            "not daxN.M");
    refused(std::string(70 * 1024, ' ') + kNdctlOut, "more than the 65536");
}

TEST(NdctlJson, NameShapes) {
    EXPECT_TRUE(valid_nd_name("dax0.0", "dax"));
    EXPECT_TRUE(valid_nd_name("dax12.3", "dax"));
    EXPECT_TRUE(valid_nd_name("namespace1.0", "namespace"));
    for (const char* bad : {"dax", "dax0", "dax0.", "dax.0", "dax0.0.0", "dax0.0 ", "dax0.a", "dax0.0\n", "xdax0.0",
                            "dax0.00000000000000000000000"})
        EXPECT_FALSE(valid_nd_name(bad, "dax")) << bad;
}

TEST(KmemBlocks, WholeBlocksInsideTheRange) {
    constexpr std::uint64_t b = 128 * kMiB;
    // The 1152 MiB namespace at 4 GiB: the dax range starts past the info
    // block and memmap (4 GiB + 20 MiB here) and ends at 4 GiB + 1152 MiB.
    const std::uint64_t start = 4 * kGiB + 20 * kMiB;
    EXPECT_THAT(kmem_blocks(start, 4 * kGiB + 1152 * kMiB - start, b), ElementsAre(33, 34, 35, 36, 37, 38, 39, 40));
    EXPECT_THAT(kmem_blocks(4 * kGiB, 2 * b, b), ElementsAre(32, 33));
    EXPECT_TRUE(kmem_blocks(4 * kGiB + 1, b, b).empty());
    EXPECT_TRUE(kmem_blocks(0, b, 0).empty());
    EXPECT_TRUE(kmem_blocks(~0ULL - 10, 100, b).empty()) << "wrap-around";
}

// memhp lab --dax: bad combinations are refused before anything boots.
std::string memhp_bin() { return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }
RunResult memhp_lab(std::vector<std::string> args) {
    args.insert(args.begin(), {memhp_bin(), "lab"});
    return run(args, {.timeout = std::chrono::seconds(20)});
}

TEST(LabDaxCli, RefusedBeforeBoot) {
    auto r = memhp_lab({"--dax", "100M"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("multiple of 128M"));
    r = memhp_lab({"--dax-memmap-on-memory", "on"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("needs --dax SIZE"));
    r = memhp_lab({"--dax", "1G", "--dax-memmap-on-memory", "on", "--memmap-on-memory", "off"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("EOPNOTSUPP"));
    r = memhp_lab({"--dax", "1G", "--node-mem", "1G,1G"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("drop --node-mem"));
    r = memhp_lab({"--dax", "1G", "--virtio-mem", "1G"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("choose one device"));
    r = memhp_lab({"--dax-memmap-on-memory", "maybe"});
    EXPECT_EQ(r.exit_code, 2);
}

TEST(LabDaxCli, HelpExplainsTheFlags) {
    auto r = run({memhp_bin(), "lab", "--help"}, {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("--dax "));
    EXPECT_THAT(r.out, HasSubstr("--dax-memmap-on-memory"));
    EXPECT_THAT(r.out, HasSubstr("Linux >= 6.8"));
}

}  // namespace
}  // namespace memhp::lab
