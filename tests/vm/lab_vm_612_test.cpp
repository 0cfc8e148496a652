// SPDX-License-Identifier: Apache-2.0
// Debian's 6.12 kernel: boots in the lab (compressed modules, different
// built-ins, auto-online by default) and one hot-plug cycle passes.
#include <nlohmann/json.hpp>

#include "vm_support.hpp"

namespace memhp::vmtest {
namespace {

class Kernel612 : public GuestSuite<Kernel612> {
public:
    static lab::GuestConfig Config() { return config("6.12", true); }
};

TEST_F(Kernel612, BootsAndOneCyclePasses) {
    EXPECT_TRUE(guest_->release().starts_with("6.12.")) << guest_->release();
    EXPECT_EQ(mem_->memmap_on_memory_param(), "Y");
    // The lab switched Debian 6.12's auto-online off so it controls onlining.
    EXPECT_EQ(guest_->agent().read("/sys/devices/system/memory/auto_online_blocks"), "offline\n");
    auto c = lab::run_cycle(*mem_, {128 * kMiB, 1, lab::Zone::Movable}, 1);
    ASSERT_TRUE(c.ok()) << lab::to_json(c).dump(2);
    EXPECT_EQ(c.phase("add")->after.blocks, c.before.blocks + 1);
    EXPECT_EQ(c.phase("online")->after.node(1).total_kb, 129024u);
    EXPECT_EQ(c.phase("remove")->after.blocks, c.before.blocks);
    EXPECT_TRUE(c.device_deleted);
}

}  // namespace
}  // namespace memhp::vmtest
