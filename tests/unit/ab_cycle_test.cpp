// SPDX-License-Identifier: Apache-2.0
// Whole `memhp ab` runs against modelled guests (fake_guest.hpp): the
// fleet, every mode, the tracer's records and the results document, with
// the real MemoryLab, GuestTrace, GuestHog, cycles and results loader, and
// no VM.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <memory>
#include <vector>

#include "fake_guest.hpp"
#include "memhp/ab/results.hpp"
#include "memhp/ab/runner.hpp"
#include "memhp/files.hpp"
#include "memhp/lab/cycle.hpp"

namespace memhp::ab {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;

constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::uint64_t k128M = 128 * kMiB;

// An A/B run whose guests come from the fake: the default arms (page-alloc:
// memmap_on_memory off, altmap: on) on 6.1, manual onlining, no plots, no
// fallback check unless a test asks.
class AbFake : public ::testing::Test {
protected:
    void SetUp() override {
        std::signal(SIGPIPE, SIG_IGN);  // as memhp does: a dead guest's socket is an error, not a signal
        lab::GuestConfig base;
        base.kernel = "6.1";
        cfg.arms = default_arms(base);
        cfg.cycles = 2;
        cfg.plots = false;
        cfg.fallback_kernel.clear();
        cfg.fallback_size = 0;
        cfg.timeout = 5s;
        cfg.out = out.path();
        cfg.start_guest = [this](const lab::GuestConfig& g, const lab::Machine::Progress&) {
            const auto k = models.size() < kernels.size() ? kernels[models.size()] : test::FakeKernel{};
            auto guest = std::make_unique<test::FakeGuest>(g, k);
            models.push_back(guest->model());
            return std::unique_ptr<lab::Machine>(std::move(guest));
        };
    }
    int run() {
        return run_ab(
            cfg, [this](const std::string& s) { said.push_back(s); }, doc);
    }
    // The results file as report and compare read it.
    Results load() const { return load_results(out.path() / "results.json"); }

    TempDir out{"memhp-ab-fake"};
    AbConfig cfg;
    std::vector<test::FakeKernel> kernels;  // per guest, in start order (arms, then the fallback guest)
    std::vector<std::shared_ptr<test::GuestModel>> models;
    std::vector<std::string> said;
    json doc;
};

TEST_F(AbFake, AWholeRunRecordsEveryCycleWithTheGuestsNumbers) {
    ASSERT_EQ(run(), 0) << doc.dump(1);
    const auto res = load();
    EXPECT_EQ(res.status, "complete");
    EXPECT_TRUE(res.errors.empty());
    ASSERT_EQ(res.arms.size(), 2u);
    for (const auto& a : res.arms) {
        ASSERT_EQ(a.cycles.size(), 2u) << a.name;
        ASSERT_TRUE(a.guest) << a.name;
        EXPECT_EQ(a.guest->release, "6.1.0-fake-amd64");
        EXPECT_EQ(a.guest->auto_online_blocks, "offline");
        EXPECT_EQ(a.guest->trace_losses, "") << "the tracer's summary arrived";
        for (const auto& c : a.cycles) {
            EXPECT_TRUE(c.ok);
            ASSERT_EQ(c.phases.size(), lab::kPhases.size());
            for (std::size_t i = 0; i < c.phases.size(); ++i) EXPECT_EQ(c.phases[i].phase, lab::kPhases[i]);
            EXPECT_DOUBLE_EQ(c.metrics.at("probe_online_s"), 0.002);
            EXPECT_DOUBLE_EQ(c.metrics.at("probe_offline_s"), 0.005);
            EXPECT_DOUBLE_EQ(c.metrics.at("probe_remove_s"), 0.001);
        }
    }
    const auto& page_alloc = res.arms[0].cycles[0].metrics;
    const auto& altmap = res.arms[1].cycles[0].metrics;
    EXPECT_EQ(res.arms[0].guest->memmap_on_memory, "N");
    EXPECT_EQ(res.arms[1].guest->memmap_on_memory, "Y");
    EXPECT_DOUBLE_EQ(page_alloc.at("probe_add_s"), 0.004);
    EXPECT_DOUBLE_EQ(altmap.at("probe_add_s"), 0.003);
    EXPECT_DOUBLE_EQ(page_alloc.at("memmap_page_allocator_bytes"), 2.0 * kMiB);
    EXPECT_DOUBLE_EQ(page_alloc.at("memmap_altmap_bytes"), 0);
    EXPECT_DOUBLE_EQ(altmap.at("memmap_altmap_bytes"), 2.0 * kMiB);
    EXPECT_DOUBLE_EQ(page_alloc.at("free_consumed_bytes"), 2.0 * kMiB);
    EXPECT_DOUBLE_EQ(altmap.at("free_consumed_bytes"), 0);
    // The guest's own view: node 0 paid for the page-alloc arm's memmap;
    // the altmap arm's block holds its memmap itself.
    EXPECT_DOUBLE_EQ(page_alloc.at("memfree_drop_at_add_bytes"), 2.0 * kMiB);
    EXPECT_DOUBLE_EQ(altmap.at("memfree_drop_at_add_bytes"), 0);
    EXPECT_DOUBLE_EQ(page_alloc.at("node_memtotal_after_online_bytes"), 128.0 * kMiB);
    EXPECT_DOUBLE_EQ(altmap.at("node_memtotal_after_online_bytes"), 126.0 * kMiB);
    // ABBA: the arm that goes first alternates.
    EXPECT_EQ(doc["arms"][0]["cycles"][0]["position"], 0);
    EXPECT_EQ(doc["arms"][0]["cycles"][1]["position"], 1);
    EXPECT_EQ(doc["arms"][0]["cycles"][0]["dimms"][0]["blocks"].size(), 1u);
    EXPECT_EQ(doc["arms"][0]["cycles"][0]["ops"].size(), 4u) << "add, online, offline, remove";
    ASSERT_EQ(models.size(), 2u);
    for (const auto& m : models) {
        EXPECT_EQ(m->device_adds(), 2);
        EXPECT_EQ(m->blocks(), 8u) << "every DIMM went again";
    }
    EXPECT_TRUE(std::filesystem::exists(out.path() / "summary.md"));
}

TEST_F(AbFake, RoundsRecordAnOfflineRefusedWithEbusy) {
    cfg.cycles = 1;
    kernels = {{}, {}};
    kernels[1].offline_ebusy = true;
    EXPECT_EQ(run(), 1) << "a failed cycle fails the run";
    const auto res = load();
    EXPECT_EQ(res.status, "complete") << "the guest is still there: nobody is taken out";
    ASSERT_TRUE(res.arms[0].cycles.at(0).ok);
    const auto& c = res.arms[1].cycles.at(0);
    EXPECT_FALSE(c.ok);
    ASSERT_EQ(c.phases.size(), 3u) << "add, online, offline; no remove";
    EXPECT_FALSE(c.phases[2].ok);
    EXPECT_THAT(c.phases[2].error, HasSubstr("Device or resource busy"));
    const auto& raw = doc["arms"][1]["cycles"][0];
    EXPECT_EQ(raw["phases"][2]["errno"], EBUSY);
    EXPECT_EQ(raw["cleanup"], "left 1 DIMM(s) in the guest: offline failed");
    EXPECT_EQ(models[1]->blocks(), 9u) << "the DIMM stays, still online";
    EXPECT_EQ(models[1]->blocks_online(), 9u);
}

TEST_F(AbFake, RoundsTakeAGuestThatDiesOutOfTheRun) {
    kernels = {{}, {}};
    kernels[1].die_at_device_add = 1;
    EXPECT_EQ(run(), 1);
    const auto res = load();
    EXPECT_EQ(res.status, "failed");
    ASSERT_EQ(res.errors.size(), 1u);
    EXPECT_THAT(res.errors[0], StartsWith("altmap: guest lost in cycle 1"));
    EXPECT_THAT(doc["arms"][1]["error"].get<std::string>(), HasSubstr("the fake guest died"));
    ASSERT_EQ(res.arms[1].cycles.size(), 1u);
    EXPECT_TRUE(doc["arms"][1]["cycles"][0]["guest_lost"].get<bool>());
    EXPECT_EQ(res.arms[0].cycles.size(), 1u) << "the run stops after the round that lost a guest";
    EXPECT_TRUE(res.arms[0].cycles[0].ok);
}

TEST_F(AbFake, RoundsUnderAutoOnlineFoldTheKernelsOnlineIntoTheAdd) {
    for (auto& a : cfg.arms) a.guest.online = lab::OnlineMode::Auto;
    cfg.cycles = 1;
    ASSERT_EQ(run(), 0) << doc.dump(1);
    const auto res = load();
    for (std::size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(res.arms[i].guest->auto_online_blocks, "online");
        EXPECT_EQ(doc["arms"][i]["cycles"][0]["online_by"], "kernel");
        const auto& m = res.arms[i].cycles.at(0).metrics;
        EXPECT_EQ(m.count("wall_online_s"), 0u) << "one wall time until the blocks are online";
        EXPECT_DOUBLE_EQ(m.at("probe_online_s"), 0.002);
        EXPECT_DOUBLE_EQ(m.at("probe_add_inclusive_s"), m.at("probe_add_s") + 0.002) << "the nested online";
        EXPECT_DOUBLE_EQ(m.at("probe_nested_ops"), 1);
    }
}

TEST_F(AbFake, AProbesOffArmHasWallTimesOnly) {
    cfg.arms[1].probes = false;
    cfg.cycles = 1;
    ASSERT_EQ(run(), 0) << doc.dump(1);
    const auto res = load();
    EXPECT_EQ(res.arms[1].guest->probes, "off (probes=off)");
    const auto& m = res.arms[1].cycles.at(0).metrics;
    EXPECT_GT(m.at("wall_add_s"), 0);
    EXPECT_EQ(m.count("probe_add_s"), 0u);
    EXPECT_TRUE(doc["arms"][1]["cycles"][0]["ops"].empty());
    EXPECT_DOUBLE_EQ(res.arms[0].cycles.at(0).metrics.at("probe_add_s"), 0.004) << "the other arm still traced";
}

TEST_F(AbFake, DimmScaleRampGrowsEveryArmAndTearsItDown) {
    cfg.scale = true;
    cfg.scale_size = 4 * k128M;
    ASSERT_EQ(run(), 0) << doc.dump(1);
    const auto res = load();
    EXPECT_EQ(res.options.mode, "scale");
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& a = res.arms[i];
        ASSERT_EQ(a.scale.size(), 4u) << a.name;
        for (std::size_t s = 0; s < 4; ++s) {
            EXPECT_TRUE(a.scale[s].ok);
            EXPECT_DOUBLE_EQ(a.scale[s].present_before_bytes, static_cast<double>(s * k128M));
            EXPECT_DOUBLE_EQ(a.scale[s].probe_add_s, i == 0 ? 0.004 : 0.003);
            EXPECT_DOUBLE_EQ(a.scale[s].probe_online_s, 0.002);
            EXPECT_GT(a.scale[s].wall_online_s, 0) << "the lab onlined";
        }
        EXPECT_TRUE(doc["arms"][i].contains("scale_teardown_s"));
        EXPECT_TRUE(doc["arms"][i]["scale_analysis"].is_object());
        EXPECT_EQ(models[i]->device_adds(), 4);
        EXPECT_EQ(models[i]->blocks(), 8u);
    }
    EXPECT_GE(models[0]->config().slots, 6u) << "sized for the ramp";
}

TEST_F(AbFake, VirtioMemScaleRampPlugsABlockAStep) {
    for (auto& a : cfg.arms) a.guest.node_mem = {256 * kMiB, 0};
    cfg.scale = true;
    cfg.scale_device = ScaleDevice::VirtioMem;
    cfg.scale_size = 4 * k128M;
    ASSERT_EQ(run(), 0) << doc.dump(1);
    const auto res = load();
    EXPECT_EQ(res.options.scale_device, "virtio-mem");
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& a = res.arms[i];
        ASSERT_EQ(a.scale.size(), 4u) << a.name;
        for (const auto& s : a.scale) {
            EXPECT_TRUE(s.ok);
            EXPECT_DOUBLE_EQ(s.blocks, 1);
            EXPECT_DOUBLE_EQ(s.probe_add_s, 0.004) << "virtio-mem never uses the altmap, whatever the arm";
        }
        EXPECT_EQ(doc["arms"][i]["scale"][3]["memmap"]["buddy_pages"], 512);
        EXPECT_EQ(doc["arms"][i]["scale_total"]["steps_ok"], 4);
        EXPECT_EQ(models[i]->device_adds(), 0) << "no DIMM";
        ASSERT_EQ(models[i]->config().virtio_mem.size(), 1u);
        EXPECT_EQ(models[i]->blocks_online(), models[i]->blocks());
    }
    EXPECT_EQ(models[0]->blocks() - 4, models[0]->config().node_mem.front() / k128M) << "boot memory + the ramp";
}

TEST_F(AbFake, FallbackCheckSeesSixOneFallBackToThePageAllocator) {
    cfg.cycles = 1;
    cfg.fallback_kernel = "6.12";
    cfg.fallback_size = 8 * k128M;
    ASSERT_EQ(run(), 0) << doc.dump(1);
    ASSERT_EQ(models.size(), 3u) << "both arms and the extra 6.12 guest";
    EXPECT_EQ(models[2]->config().kernel, "6.12");
    EXPECT_EQ(models[2]->config().memmap_on_memory, true);
    const auto res = load();
    EXPECT_EQ(res.arms.size(), 2u) << "the extra guest is no arm";
    ASSERT_EQ(res.fallback_check.size(), 2u) << "the altmap arm and the 6.12 guest; not the page-alloc arm";
    const auto& six_one = res.fallback_check[0];
    EXPECT_EQ(six_one.guest, "altmap");
    EXPECT_EQ(six_one.release, "6.1.0-fake-amd64");
    EXPECT_DOUBLE_EQ(six_one.page_allocator_bytes, 16.0 * kMiB);
    EXPECT_DOUBLE_EQ(six_one.altmap_bytes, 0);
    EXPECT_TRUE(six_one.unused);
    EXPECT_THAT(six_one.reason, StartsWith("the add spans 8 memory blocks"));
    const auto& later = res.fallback_check[1];
    EXPECT_EQ(later.guest, "fallback-6.12");
    EXPECT_DOUBLE_EQ(later.altmap_bytes, 16.0 * kMiB);
    EXPECT_DOUBLE_EQ(later.page_allocator_bytes, 0);
    EXPECT_FALSE(later.unused);
    EXPECT_FALSE(later.error);
    EXPECT_EQ(models[2]->blocks(), 8u) << "the 1G DIMM went again";
}

TEST_F(AbFake, ScenarioRecordsEachAddAndAFailedOneWithItsErrno) {
    cfg.cycles = 1;
    cfg.dimms = 2;
    cfg.scenario = Scenario::Fragmented;
    kernels = {{}, {}};
    kernels[1].add_errno = ENOMEM;
    ASSERT_EQ(run(), 0) << "a failed add is the scenario's result, not a harness failure\n" << doc.dump(1);
    const auto res = load();
    EXPECT_EQ(res.options.scenario, "fragmented");
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& steps = doc["arms"][i]["scenario_steps"];
        ASSERT_EQ(steps.size(), 1u);
        EXPECT_EQ(steps[0]["hog"]["setup_s"], 0.25) << "memhp-hog's ready line";
        const auto& sc = doc["arms"][i]["cycles"].at(0)["scenario"];
        EXPECT_TRUE(sc["harness_ok"].get<bool>());
        ASSERT_EQ(sc["adds"].size(), 2u);
    }
    for (const auto& a : doc["arms"][0]["cycles"][0]["scenario"]["adds"]) {
        EXPECT_TRUE(a["ok"].get<bool>());
        EXPECT_EQ(a["memmap"]["expected_pages"], 512);
        EXPECT_EQ(a["memmap"]["pmd_pages"], 512);
        EXPECT_FALSE(a["base_pages"].get<bool>());
        EXPECT_EQ(a["free_consumed_bytes"], 2 * kMiB);
    }
    for (const auto& a : doc["arms"][1]["cycles"][0]["scenario"]["adds"]) {
        EXPECT_FALSE(a["ok"].get<bool>());
        EXPECT_EQ(a["errno"], ENOMEM);
        EXPECT_THAT(a["error"].get<std::string>(), HasSubstr("add_memory() failed in the guest"));
    }
    EXPECT_EQ(res.arms[1].cycles.at(0).phases.at(0).phase, "add");
    EXPECT_FALSE(res.arms[1].cycles[0].phases[0].ok);
    EXPECT_TRUE(doc["scenario"].is_object()) << "the scenario summary";
    EXPECT_EQ(models[1]->blocks(), 8u);
    EXPECT_EQ(models[0]->blocks(), 8u) << "both DIMMs removed again";
}

}  // namespace
}  // namespace memhp::ab
