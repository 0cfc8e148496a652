// SPDX-License-Identifier: Apache-2.0
#pragma once
// What a `memhp ab` run does with its booted fleet (private to bench/ab),
// one file each: mode_rounds.cpp, mode_scale.cpp, mode_fallback.cpp,
// mode_scenario.cpp. Each records into the fleet's results document and
// saves it as it goes; a guest that fails is taken out with Fleet::fail.
#include "fleet.hpp"

namespace memhp::ab::detail {

// Rounds [first, last] of boot `boot`: one cycle per arm, ABBA order.
void rounds(Fleet& f, int boot, int first, int last);

// Before anything boots: every arm's boot memory for the virtio-mem scale
// ramp (into f.plans()), and a refusal (UsageError, with the arithmetic)
// when the host cannot hold all the guests at once.
void plan_virtio_scale(Fleet& f);
// The scale ramp with DIMMs: one --dimm DIMM a step, then all removed.
void scale_ramp(Fleet& f);
// The scale ramp with one virtio-mem device grown by a step at a time.
void virtio_scale_ramp(Fleet& f);

// A multi-block add with memmap_on_memory=1 in every guest that has it.
void fallback_checks(Fleet& f);

// --scenario: memhp-hog sets each guest's memory up, then the cycles.
void scenario_steps(Fleet& f);

}  // namespace memhp::ab::detail
