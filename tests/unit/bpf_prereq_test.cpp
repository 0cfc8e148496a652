// SPDX-License-Identifier: Apache-2.0
// The errors memhp gives before touching BPF: each names what is missing and
// what to do, checked against fixture trees.
#include <gtest/gtest.h>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/files.hpp"

namespace {

using memhp::collector::BpfError;
using memhp::collector::check_bpf_prerequisites;

std::string error_for(const memhp::fs::path& root) {
    try {
        check_bpf_prerequisites(root.string());
    } catch (const BpfError& e) {
        return e.what();
    }
    return {};
}

TEST(BpfPrerequisites, KernelWithoutBtfSaysWhichConfigToUse) {
    memhp::TempDir root;
    memhp::fs::create_directories(root.path() / "sys/devices/system/memory");
    const auto msg = error_for(root.path());
    EXPECT_NE(msg.find("exposes no BTF"), std::string::npos) << msg;
    EXPECT_NE(msg.find("CONFIG_DEBUG_INFO_BTF=y"), std::string::npos) << msg;
}

TEST(BpfPrerequisites, KernelWithoutMemoryHotplugSaysSo) {
    memhp::TempDir root;
    memhp::fs::create_directories(root.path() / "sys/kernel/btf");
    memhp::write_file(root.path() / "sys/kernel/btf/vmlinux", "btf");
    const auto msg = error_for(root.path());
    EXPECT_NE(msg.find("no memory hot-plug support"), std::string::npos) << msg;
    EXPECT_NE(msg.find("CONFIG_MEMORY_HOTPLUG=y"), std::string::npos) << msg;
}

TEST(BpfPrerequisites, CompleteTreePasses) {
    memhp::TempDir root;
    memhp::fs::create_directories(root.path() / "sys/kernel/btf");
    memhp::fs::create_directories(root.path() / "sys/devices/system/memory");
    memhp::write_file(root.path() / "sys/kernel/btf/vmlinux", "btf");
    EXPECT_EQ(error_for(root.path()), "");
}

}  // namespace
