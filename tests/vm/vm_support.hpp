// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared pieces of the VM test tier: boot a lab guest once per test suite.
#include <gtest/gtest.h>

#include <iostream>
#include <memory>

#include "memhp/lab/cycle.hpp"
#include "memhp/lab/guest.hpp"
#include "memhp/lab/memory.hpp"

namespace memhp::vmtest {

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::uint64_t kBlock = 128 * kMiB;              // x86's memory block
constexpr std::uint64_t kBlockPages = kBlock / 4096;      // 32768
constexpr std::uint64_t kMemmapPages = kBlockPages / 64;  // 512: 64-byte struct page per 4 KiB page

inline lab::GuestConfig config(const std::string& kernel, std::optional<bool> memmap_on_memory) {
    lab::GuestConfig cfg;
    cfg.kernel = kernel;
    cfg.memmap_on_memory = memmap_on_memory;
    cfg.node_mem = {1024 * kMiB, 0};  // 1 GiB node 0, memoryless node 1
    return cfg;
}

// Waits for `marker` in a guest process's output file.
inline void wait_for_output(lab::AgentClient& agent, int pid, const std::string& file, const std::string& marker,
                            const std::string& what) {
    for (int i = 0; i < 900; ++i) {
        if (agent.try_read(file).value_or("").find(marker) != std::string::npos) return;
        if (auto code = agent.wait(pid, std::chrono::milliseconds(100)))
            throw Error(what + " exited early (" + std::to_string(*code) + "):\n" + agent.try_read(file).value_or(""));
    }
    throw Error(what + " never printed '" + marker + "':\n" + agent.try_read(file).value_or(""));
}

inline std::unique_ptr<lab::Guest> boot(const lab::GuestConfig& cfg) {
    return lab::Guest::boot(cfg, [](const std::string& s) { std::cerr << "[guest] " << s << std::endl; });
}

// A suite fixture owning one guest for all its tests. Derive and define
// static lab::GuestConfig Config().
template <typename Derived>
class GuestSuite : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        try {
            guest_ = boot(Derived::Config());
            mem_ = std::make_unique<lab::MemoryLab>(*guest_);
        } catch (const std::exception& e) {
            boot_error_ = e.what();
        }
    }
    static void TearDownTestSuite() {
        mem_.reset();
        if (guest_) guest_->shutdown();
        guest_.reset();
    }
    void SetUp() override {
        ASSERT_TRUE(guest_) << "guest failed to boot: " << boot_error_;
        ASSERT_TRUE(guest_->alive()) << "guest died earlier:\n" << guest_->console_tail();
    }
    static inline std::unique_ptr<lab::Guest> guest_;
    static inline std::unique_ptr<lab::MemoryLab> mem_;
    static inline std::string boot_error_;
};

}  // namespace memhp::vmtest
