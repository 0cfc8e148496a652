// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/kernel_symbols.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace memhp::collector {
namespace {

TEST(Kallsyms, AddressEndAndTextOfWantedSymbolsOnly) {
    std::istringstream in(
        "ffffffff81000000 T _stext\n"
        "ffffffff81234560 T vmemmap_alloc_block\n"
        "ffffffff81234560 t vmemmap_alloc_block_alias\n"  // same address: does not end it
        "ffffffff812345f0 T vmemmap_alloc_block_buf\n"
        "ffffffff81234700 t something_else\n"
        "ffffffff82a00000 D vmemmap_base\n"
        "ffffffff82a00008 D next_var\n"
        "ffffffffc0001000 t helper\t[virtio_mem]\n");
    auto k = parse_kallsyms(in, {"vmemmap_alloc_block", "vmemmap_alloc_block_buf", "vmemmap_base", "missing"});
    EXPECT_EQ(k.address.at("vmemmap_alloc_block"), 0xffffffff81234560ull);
    EXPECT_EQ(k.end.at("vmemmap_alloc_block"), 0xffffffff812345f0ull);
    EXPECT_EQ(k.end.at("vmemmap_alloc_block_buf"), 0xffffffff81234700ull);
    EXPECT_EQ(k.address.at("vmemmap_base"), 0xffffffff82a00000ull);
    EXPECT_TRUE(k.text.contains("vmemmap_alloc_block"));
    EXPECT_FALSE(k.text.contains("vmemmap_base"));  // data, not a kprobe target
    EXPECT_FALSE(k.address.contains("missing"));
    EXPECT_FALSE(k.address.contains("_stext"));
}

TEST(Kallsyms, FirstOccurrenceWinsAndTheLastSymbolHasNoEnd) {
    std::istringstream in(
        "ffffffff81000010 t dup\n"
        "ffffffff81000020 t other\n"
        "ffffffff81000030 t dup\n"
        "ffffffff81000040 T last\n");
    auto k = parse_kallsyms(in, {"dup", "last"});
    EXPECT_EQ(k.address.at("dup"), 0xffffffff81000010ull);
    EXPECT_EQ(k.end.at("dup"), 0xffffffff81000020ull);
    EXPECT_FALSE(k.end.contains("last"));
}

TEST(Kallsyms, ZeroedAddressesWithoutPrivilegeAndJunkLines) {
    std::istringstream in("0000000000000000 T add_memory_resource\nnot a line\n\nzz T bad\n");
    auto k = parse_kallsyms(in, {"add_memory_resource", "bad"});
    EXPECT_EQ(k.address.at("add_memory_resource"), 0u);
    EXPECT_FALSE(k.address.contains("bad"));
}

TEST(FunctionList, NamesModulesAndAddressColumn) {
    std::istringstream in(
        "add_memory_resource\n"
        "virtio_mem_probe [virtio_mem]\n"
        "ffffffff81234560 online_pages\n"
        "__add_pages\n");
    auto s = parse_function_list(in, {"add_memory_resource", "virtio_mem_probe", "online_pages", "vmemmap_populate"});
    EXPECT_EQ(s, (std::set<std::string>{"add_memory_resource", "virtio_mem_probe", "online_pages"}));
}

TEST(FunctionList, ShortHexLookingNamesAreNames) {
    std::istringstream in("add\nbeef [mod]\n");
    auto s = parse_function_list(in, {"add", "beef"});
    EXPECT_EQ(s, (std::set<std::string>{"add", "beef"}));
}

TEST(KprobeBlacklist, NamesAfterTheRange) {
    std::istringstream in(
        "0xffffffff81001000-0xffffffff81001040\tadd_memory_resource\n"
        "0xffffffff81002000-0xffffffff81002040\tdo_int3\n");
    auto s = parse_kprobe_blacklist(in, {"add_memory_resource", "online_pages"});
    EXPECT_EQ(s, (std::set<std::string>{"add_memory_resource"}));
}

}  // namespace
}  // namespace memhp::collector
