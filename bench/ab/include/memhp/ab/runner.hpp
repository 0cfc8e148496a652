// SPDX-License-Identifier: Apache-2.0
#pragma once
// `memhp ab`: boots one lab guest per arm, runs memhp's tracer in each, and
// runs interleaved hot-plug cycles (or the scale ramp), recording per cycle
// the probes' phase latencies, the host's wall times, the memmap's source
// and locality and the free memory the add consumed. Writes results.json,
// summary.md and plots into the output directory as it goes.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memhp/ab/device.hpp"
#include "memhp/ab/report.hpp"
#include "memhp/ab/scale_plan.hpp"
#include "memhp/ab/scenario.hpp"
#include "memhp/lab/cycle.hpp"
#include "memhp/lab/guest.hpp"
#include "memhp/lab/memory.hpp"

namespace memhp::ab {

struct ArmSpec {
    std::string name;
    lab::GuestConfig guest;
    std::string memmap_on_memory = "default";  // on | off | default, as asked
    // probes=off: no memhp trace in this arm's guest, so the host's wall
    // times show what watching costs (the probe metrics are absent).
    bool probes = true;
    // What the cycles hot-plug (device.hpp): DIMMs, or virtio-mem blocks.
    DeviceKind device = DeviceKind::Dimm;
};

// "NAME:key=value,key=value..." with keys kernel, device (dimm|virtio-mem|dax;
// dax is refused while the lab lacks it), mmo (on|off|default), online, probes, append (one kernel command-line word;
// repeatable) and node-mem. Unset keys come from `base`. Throws UsageError.
[[nodiscard]] ArmSpec parse_arm(const std::string& text, const lab::GuestConfig& base);
// The default pair on `base`'s kernel: "page-alloc" (memmap_on_memory=0,
// memmap from alloc_pages_node) and "altmap" (memmap_on_memory=1).
[[nodiscard]] std::vector<ArmSpec> default_arms(const lab::GuestConfig& base);

struct AbConfig {
    std::vector<ArmSpec> arms;
    int cycles = 20;  // rounds; each round runs one cycle per arm
    // Guests per arm, one after another: the rounds are split evenly across
    // them (boot 1 runs the first share, ...), every arm rebooting together.
    // A boot's layout (KASLR, the direct map) can shift a metric for all of
    // its cycles, so boots, not cycles, are the replicates the gate tests.
    int boots = 1;
    // Before each arm's cycle, time a fixed CPU-bound workload in the guest:
    // it must not differ between arms, so it tracks the host's speed (the
    // gate's drift check). Recorded as "reference_s" in each cycle.
    bool reference = true;
    std::uint64_t dimm_size = std::uint64_t{128} << 20;
    int dimms = 1;
    int node = 1;
    std::string zone = "movable";
    std::chrono::seconds timeout{120};
    // Kernel of an extra guest (memmap_on_memory=1) for the multi-block
    // fallback check; empty: no extra guest. The check also runs in every
    // arm whose guest has memmap_on_memory enabled, unless fallback_size is 0.
    std::string fallback_kernel = "6.12";
    std::uint64_t fallback_size = std::uint64_t{1} << 30;
    bool scale = false;  // the scale ramp instead of cycles
    std::uint64_t scale_size = std::uint64_t{8} << 30;
    // --device: DIMMs (one --dimm DIMM a step, up to the slots) or one
    // virtio-mem device grown by scale_step a step (0: one 128M block).
    ScaleDevice scale_device = ScaleDevice::Dimm;
    std::uint64_t scale_step = 0;
    std::filesystem::path out;
    bool plots = true;
    CompareOptions compare;
    std::string title;
    // --scenario (scenario.hpp): memhp-hog sets each guest's memory up
    // before the cycles; pressure runs `cycles` rounds at every margin.
    Scenario scenario = Scenario::None;
    std::vector<std::uint64_t> margins;  // pressure: node 0 MemFree the hog leaves, largest first
    int hog_node = 0;
    std::chrono::seconds hog_timeout{600};
    // --peer: the tool that times the phases a second time in every arm's
    // guest (peer.hpp); empty: none. Only "bpftrace" so far.
    std::string peer;
    std::chrono::seconds peer_attach_timeout{900};
    // Starts one guest (a QEMU starting, not yet ready: the fleet calls
    // wait_ready() on it). Empty: lab::Guest::start, a real QEMU guest; the
    // unit tests give a modelled guest here (tests/unit/fake_guest.hpp).
    std::function<std::unique_ptr<lab::Machine>(const lab::GuestConfig&, const lab::Machine::Progress&)> start_guest;
};

// The time now, UTC, ISO 8601 ("2026-12-02T12:00:00Z"): results and calibration stamps.
[[nodiscard]] std::string now_iso_utc();

using Progress = std::function<void(const std::string&)>;

// Throws UsageError for a configuration that cannot work (before any boot).
void validate(const AbConfig& cfg);

// The plan of a virtio-mem scale run for `arm` (scale_plan.hpp): its boot
// memory, maxmem and the host memory all arms need at once; throws
// UsageError, with the arithmetic, when `host_available` (bytes, 0: do not
// check) cannot hold it.
[[nodiscard]] ScalePlan virtio_scale_plan(const AbConfig& cfg, const ArmSpec& arm, std::uint64_t host_available);
// The step a scale run grows by: --dimm for DIMMs, --scale-step (default one
// 128M block) for virtio-mem.
[[nodiscard]] std::uint64_t scale_step_bytes(const AbConfig& cfg);

// Runs the benchmark. Returns the exit status: 0 all good, 1 a failure
// (recorded in the results). Throws Interrupted after saving what was
// measured. The results document is left in `results`.
int run_ab(const AbConfig& cfg, const Progress& progress, nlohmann::json& results);

// Per-cycle metrics (see metrics.hpp) from a cycle and the trace records
// that belong to it.
[[nodiscard]] nlohmann::json cycle_metrics(const lab::CycleRecord& c, const std::vector<nlohmann::json>& ops, int node);

}  // namespace memhp::ab
