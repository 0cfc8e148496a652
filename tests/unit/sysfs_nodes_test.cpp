// SPDX-License-Identifier: Apache-2.0
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "memhp/collector/aggregator.hpp"
#include "memhp/collector/host_config.hpp"
#include "memhp/error.hpp"
#include "memhp/files.hpp"

namespace memhp::collector {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kBlockPages = 32768;  // 128 MiB of 4 KiB pages

// A fake /sys/devices/system/memory under a temporary root.
class SysfsTree {
public:
    SysfsTree() : mem_(dir_.path() / "sys/devices/system/memory") {
        fs::create_directories(mem_);
        fs::create_directories(dir_.path() / "sys/devices/system/node/node0");
        fs::create_directories(dir_.path() / "sys/devices/system/node/node1");
        // Things that live next to the blocks and must be ignored.
        write_file(mem_ / "auto_online_blocks", "offline\n");
        write_file(mem_ / "probe", "");
        fs::create_directories(mem_ / "power");
        fs::create_directories(mem_ / "memory_tiering");
    }
    const fs::path& root() const { return dir_.path(); }
    void block_size(std::string_view text) { write_file(mem_ / "block_size_bytes", text); }
    // Real sysfs: memoryB/nodeN -> ../../node/nodeN.
    void linked_block(int block, int node) {
        auto d = mem_ / ("memory" + std::to_string(block));
        fs::create_directories(d);
        write_file(d / "online", "1\n");
        fs::create_directory_symlink("../../node/node" + std::to_string(node), d / ("node" + std::to_string(node)));
    }
    // Fixture style: a plain directory named nodeN.
    void plain_block(int block, int node) {
        auto d = mem_ / ("memory" + std::to_string(block));
        fs::create_directories(d / ("node" + std::to_string(node)));
    }
    void drop_block(int block) { fs::remove_all(mem_ / ("memory" + std::to_string(block))); }

private:
    TempDir dir_{"memhp-sysfs"};
    fs::path mem_;
};

TEST(SysfsNodeResolver, ReadsBlockSizeAndNodes) {
    SysfsTree t;
    t.block_size("8000000\n");
    t.linked_block(0, 0);
    t.linked_block(1, 0);
    t.plain_block(40, 1);
    SysfsNodeResolver r(t.root());
    EXPECT_EQ(r.block_size_bytes(), 128ull << 20);
    EXPECT_EQ(r.node_of_pfn(0), 0);
    EXPECT_EQ(r.node_of_pfn(kBlockPages - 1), 0);
    EXPECT_EQ(r.node_of_pfn(kBlockPages), 0);
    EXPECT_EQ(r.node_of_pfn(40 * kBlockPages), 1);
    EXPECT_EQ(r.node_of_pfn(41 * kBlockPages - 1), 1);
    EXPECT_EQ(r.node_of_pfn(2 * kBlockPages), -1);  // a hole
    EXPECT_EQ(r.node_of_pfn(~0ull), -1);            // no overflow trouble
}

TEST(SysfsNodeResolver, DanglingSymlinkStillNamesTheNode) {
    SysfsTree t;
    t.block_size("8000000");
    t.linked_block(3, 7);  // node7 does not exist in the fixture
    SysfsNodeResolver r(t.root());
    EXPECT_EQ(r.node_of_pfn(3 * kBlockPages), 7);
}

TEST(SysfsNodeResolver, RefreshesOnAMiss) {
    SysfsTree t;
    t.block_size("8000000");
    t.linked_block(0, 0);
    SysfsNodeResolver r(t.root());
    EXPECT_EQ(r.node_of_pfn(40 * kBlockPages), -1);
    t.linked_block(40, 1);  // hot-added since
    EXPECT_EQ(r.node_of_pfn(40 * kBlockPages + 5), 1);
}

TEST(SysfsNodeResolver, ExplicitRefreshForgetsRemovedBlocks) {
    SysfsTree t;
    t.block_size("8000000");
    t.linked_block(0, 0);
    t.plain_block(40, 1);
    SysfsNodeResolver r(t.root());
    EXPECT_EQ(r.node_of_pfn(40 * kBlockPages), 1);
    t.drop_block(40);
    EXPECT_EQ(r.node_of_pfn(40 * kBlockPages), 1);  // cached
    r.refresh();
    EXPECT_EQ(r.node_of_pfn(40 * kBlockPages), -1);
    EXPECT_EQ(r.node_of_pfn(0), 0);
}

TEST(SysfsNodeResolver, BlockWithoutNodeIsUnknown) {
    SysfsTree t;
    t.block_size("8000000");
    t.plain_block(0, 0);
    fs::create_directories(t.root() / "sys/devices/system/memory/memory5");
    SysfsNodeResolver r(t.root());
    EXPECT_EQ(r.node_of_pfn(5 * kBlockPages), -1);
}

TEST(SysfsNodeResolver, OtherBlockAndPageSizes) {
    SysfsTree t;
    t.block_size("0x40000000\n");  // 1 GiB blocks
    t.plain_block(2, 1);
    SysfsNodeResolver r(t.root(), 16384);  // 16 KiB pages: 65536 per block
    EXPECT_EQ(r.block_size_bytes(), 1ull << 30);
    EXPECT_EQ(r.node_of_pfn(2 * 65536), 1);
    EXPECT_EQ(r.node_of_pfn(2 * 65536 - 1), -1);
}

TEST(SysfsNodeResolver, MissingBlockSizeThrows) {
    SysfsTree t;
    try {
        SysfsNodeResolver r(t.root());
        FAIL() << "expected memhp::Error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("block_size_bytes"));
        EXPECT_THAT(e.what(), HasSubstr("CONFIG_MEMORY_HOTPLUG"));
    }
}

TEST(SysfsNodeResolver, MissingSysfsThrows) {
    TempDir empty("memhp-nosysfs");
    EXPECT_THROW(SysfsNodeResolver r(empty.path()), Error);
}

TEST(SysfsNodeResolver, MalformedBlockSizeThrows) {
    for (const char* bad : {"", "\n", "zz", "8000000x", "0", "0x", "-8000000", "12345678901234567"}) {
        SysfsTree t;
        t.block_size(bad);
        try {
            SysfsNodeResolver r(t.root());
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("block_size_bytes")) << bad;
            EXPECT_THAT(e.what(), HasSubstr("hexadecimal")) << bad;
        }
    }
}

TEST(SysfsNodeResolver, ZeroPageSizeThrows) {
    SysfsTree t;
    t.block_size("8000000");
    EXPECT_THROW(SysfsNodeResolver r(t.root(), 0), Error);
}

}  // namespace
}  // namespace memhp::collector

namespace memhp::collector {
namespace {

// One reader of memory_hotplug.memmap_on_memory for trace, exporter and doctor.
TEST(HostConfig, MemmapOnMemoryParameterAndBlockSize) {
    TempDir root;
    std::filesystem::create_directories(root.path() / "sys/devices/system/memory");
    std::filesystem::create_directories(root.path() / "sys/module/memory_hotplug/parameters");
    write_file_atomic(root.path() / "sys/devices/system/memory/block_size_bytes", "8000000\n");
    SysfsNodeResolver nodes(root.path());
    EXPECT_EQ(read_memmap_on_memory(root.path()), std::nullopt) << "5.10: no such parameter";
    EXPECT_FALSE(host_aggregator_config(nodes, root.path()).memmap_on_memory_enabled);
    const auto param = root.path() / "sys/module/memory_hotplug/parameters/memmap_on_memory";
    for (const auto& [text, on] : {std::pair{"Y\n", true}, {"force\n", true}, {"N\n", false}}) {
        write_file_atomic(param, text);
        EXPECT_EQ(read_memmap_on_memory(root.path()), trim(text));
        const auto cfg = host_aggregator_config(nodes, root.path());
        EXPECT_EQ(cfg.memmap_on_memory_enabled, on) << text;
        EXPECT_EQ(cfg.block_size_bytes, 128u << 20);
    }
}

}  // namespace
}  // namespace memhp::collector
