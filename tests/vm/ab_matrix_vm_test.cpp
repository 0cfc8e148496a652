// SPDX-License-Identifier: Apache-2.0
// memhp ab --matrix as a user runs it: one kernel (6.12), DIMMs in both
// memmap_on_memory modes and virtio-mem, one cycle per cell. Exact memmap
// page counts per cell: a 128 MiB DIMM takes 512 altmap pages on the block
// itself with mmo=on and 512 page-allocator pages from node 0 with mmo=off;
// virtio-mem takes 512 page-allocator pages and no altmap even with
// memmap_on_memory=1, every add traced with caller driver_managed.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string memhp_bin() { return (fs::read_symlink("/proc/self/exe").parent_path() / "memhp").string(); }

class AbMatrix : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::make_unique<memhp::TempDir>("memhp-ab-matrix-vm");
        std::cerr
            << "running memhp ab --matrix --kernels 6.12 --devices dimm,virtio-mem,dax --cycles 1 (five guests)..."
            << std::endl;
        result_ = memhp::run({memhp_bin(), "ab", "--matrix", "--kernels", "6.12", "--devices", "dimm,virtio-mem,dax",
                              "--cycles", "1", "--out", out().string()},
                             {.timeout = std::chrono::minutes(14)});
        std::cerr << result_.err << std::endl;
        if (auto text = memhp::try_read_file(out() / "results.json")) results_ = json::parse(*text, nullptr, false);
    }
    static void TearDownTestSuite() { dir_.reset(); }
    static fs::path out() { return dir_->path() / "out"; }
    static const json& cell(const std::string& name) {
        for (const auto& c : results_["cells"])
            if (c["cell"] == name) return c;
        throw std::runtime_error("no cell " + name);
    }
    // The cell's own run (cells/NAME/results.json), its one arm's cycles.
    static json cycles_of(const std::string& name) {
        const auto doc = json::parse(memhp::read_file(out() / "cells" / name / "results.json"));
        return doc["arms"][0]["cycles"];
    }
    static inline std::unique_ptr<memhp::TempDir> dir_;
    static inline memhp::RunResult result_;
    static inline json results_;
};

TEST_F(AbMatrix, RunsEveryValidCellAndSkipsTheRepeat) {
    ASSERT_EQ(result_.exit_code, 0) << result_.out << result_.err;
    ASSERT_TRUE(results_.is_object());
    EXPECT_EQ(results_["status"], "complete");
    ASSERT_EQ(results_["cells"].size(), 6u);
    EXPECT_EQ(cell("k6.12-dimm-on")["status"], "ok");
    EXPECT_EQ(cell("k6.12-dimm-off")["status"], "ok");
    EXPECT_EQ(cell("k6.12-virtio-mem-on")["status"], "ok");
    EXPECT_EQ(cell("k6.12-virtio-mem-off")["status"], "skipped");
    EXPECT_EQ(cell("k6.12-dax-on")["status"], "ok");
    EXPECT_EQ(cell("k6.12-dax-off")["status"], "ok");
    EXPECT_NE(result_.err.find("[5/5 k6.12-dax-off]"), std::string::npos) << "progress per cell";
    const auto md = memhp::read_file(out() / "summary.md");
    EXPECT_NE(md.find("| virtio-mem | on | ok | page allocator ¹ | remote | 0 | 512 |"), std::string::npos) << md;
    EXPECT_NE(result_.out.find("## memhp ab --matrix"), std::string::npos) << "the table is printed";
    ASSERT_TRUE(fs::exists(out() / "plots" / "matrix.svg"));
    EXPECT_GT(fs::file_size(out() / "plots" / "matrix.svg"), 2000u);
    EXPECT_TRUE(fs::exists(out() / "plots" / "matrix.dat"));
}

TEST_F(AbMatrix, DimmCellsHaveTheExactMemmapOfTheirMode) {
    ASSERT_TRUE(results_.is_object());
    const auto& on = cell("k6.12-dimm-on");
    EXPECT_EQ(on["memmap_altmap_pages"], 512);
    EXPECT_EQ(on["memmap_page_allocator_pages"], 0);
    EXPECT_EQ(on["memmap_locality"], "local");
    const auto& off = cell("k6.12-dimm-off");
    EXPECT_EQ(off["memmap_altmap_pages"], 0);
    EXPECT_EQ(off["memmap_page_allocator_pages"], 512);
    EXPECT_EQ(off["memmap_remote_pages"], 512) << "node 1 is memoryless: the memmap comes from node 0";
    EXPECT_EQ(off["memmap_locality"], "remote");
    for (const auto* c : {&on, &off}) {
        EXPECT_GT((*c)["add_s_per_block"].get<double>(), 0);
        EXPECT_GT((*c)["remove_s_per_block"].get<double>(), 0);
        EXPECT_GT((*c)["free_consumed_per_gib_bytes"].get<double>(), 0);
    }
}

// The virtio-mem A/B cycle: requested-size 128 MiB, online, offline,
// requested-size 0, in a guest booted with memmap_on_memory=1.
TEST_F(AbMatrix, VirtioMemIgnoresMemmapOnMemory) {
    ASSERT_TRUE(results_.is_object());
    const auto& v = cell("k6.12-virtio-mem-on");
    EXPECT_EQ(v["memmap_on_memory_param"], "Y") << "the guest did have memmap_on_memory on";
    EXPECT_EQ(v["memmap_altmap_pages"], 0);
    EXPECT_EQ(v["memmap_page_allocator_pages"], 512);
    EXPECT_EQ(v["memmap_remote_pages"], 512);
    EXPECT_EQ(v["memmap_source"], "page allocator");
    // About 2 MiB of free memory per 128 MiB block, 16 MiB per GiB.
    EXPECT_GT(v["free_consumed_per_gib_bytes"].get<double>(), 15.0 * (1 << 20));
    EXPECT_LT(v["free_consumed_per_gib_bytes"].get<double>(), 20.0 * (1 << 20));
    const auto cycles = cycles_of("k6.12-virtio-mem-on");
    ASSERT_EQ(cycles.size(), 1u);
    const auto& c = cycles[0];
    EXPECT_TRUE(c["ok"].get<bool>()) << c.dump(1);
    EXPECT_EQ(c["device"], "virtio-mem");
    EXPECT_EQ(c["dimms"][0]["id"], "vmem0");
    EXPECT_EQ(c["dimms"][0]["blocks"].size(), 1u);
    int adds = 0, removes = 0;
    for (const auto& op : c["ops"]) {
        if (op["phase"] == "add") {
            ++adds;
            EXPECT_EQ(op["caller"], "driver_managed");
            EXPECT_EQ(op["memmap"]["altmap_pages"], 0);
            EXPECT_EQ(op["memmap"]["buddy_pages"], 512);
        }
        removes += op["phase"] == "remove";
    }
    EXPECT_EQ(adds, 1);
    EXPECT_EQ(removes, 1);
    for (const char* phase : {"probe_add_s", "probe_online_s", "probe_offline_s", "probe_remove_s"})
        EXPECT_TRUE(c["metrics"].contains(phase)) << phase << ": " << c["metrics"].dump();
    const auto md = memhp::read_file(out() / "cells" / "k6.12-virtio-mem-on" / "summary.md");
    EXPECT_NE(md.find("virtio-mem never passes MHP_MEMMAP_ON_MEMORY"), std::string::npos) << md;
}

// dax/kmem on 6.12 (>= 6.8): the dax device's memmap_on_memory attribute,
// set by mmo=on before kmem takes the device, puts the memmap on the device.
TEST_F(AbMatrix, DaxFollowsItsDevicesMemmapOnMemoryAttribute) {
    ASSERT_TRUE(results_.is_object());
    const auto& on = cell("k6.12-dax-on");
    EXPECT_EQ(on["memmap_altmap_pages"], 512) << on.dump();
    EXPECT_EQ(on["memmap_page_allocator_pages"], 0) << on.dump();
    EXPECT_EQ(on["memmap_locality"], "local");
    const auto& off = cell("k6.12-dax-off");
    EXPECT_EQ(off["memmap_altmap_pages"], 0) << off.dump();
    EXPECT_EQ(off["memmap_page_allocator_pages"], 512) << off.dump();
    EXPECT_EQ(off["memmap_locality"], "remote");
    EXPECT_GT(off["free_consumed_per_gib_bytes"].get<double>(), 15.0 * (1 << 20));
    EXPECT_LT(on["free_consumed_per_gib_bytes"].get<double>(), 1.0 * (1 << 20));
    for (const char* name : {"k6.12-dax-on", "k6.12-dax-off"}) {
        const auto cycles = cycles_of(name);
        ASSERT_EQ(cycles.size(), 1u) << name;
        EXPECT_EQ(cycles[0]["device"], "dax") << name;
        int adds = 0;
        for (const auto& op : cycles[0]["ops"])
            if (op["phase"] == "add") {
                ++adds;
                EXPECT_EQ(op["caller"], "driver_managed") << name << ": " << op.dump();
            }
        EXPECT_GE(adds, 1) << name;
    }
}

}  // namespace
