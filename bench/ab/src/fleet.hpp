// SPDX-License-Identifier: Apache-2.0
#pragma once
// The guests of one `memhp ab` run (private to bench/ab): each arm's guest
// with its memory lab, memhp's tracer, the --peer tracer and the --scenario
// hog, plus the extra guest of the fallback check. They boot together, shut
// down together, and a guest that fails takes the run with it (fail()).
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memhp/ab/device.hpp"
#include "memhp/ab/runner.hpp"
#include "memhp/ab/scale_plan.hpp"
#include "memhp/ab/scenario.hpp"
#include "memhp/lab/guest.hpp"
#include "memhp/lab/guest_trace.hpp"
#include "memhp/lab/memory.hpp"

namespace memhp::ab::detail {

using Clock = std::chrono::steady_clock;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kBlock = std::uint64_t{128} << 20;  // x86-64 memory block

// Seconds as whole milliseconds for the progress lines ("12 ms").
[[nodiscard]] std::string ms(double s);

class ResultsDoc;

// One guest of the run: an arm, or the extra guest of the fallback check.
struct Runner {
    std::string name;
    lab::GuestConfig config;
    std::string mmo_asked;
    bool probes = true;  // false: no memhp trace in this guest (probes=off)
    bool is_arm = true;
    std::unique_ptr<HotplugDevice> device;  // what its cycles hot-plug
    std::unique_ptr<lab::Machine> guest;
    std::unique_ptr<lab::MemoryLab> mem;
    std::unique_ptr<lab::GuestTrace> trace;
    std::unique_ptr<lab::GuestTrace> peer;  // --peer
    std::unique_ptr<GuestHog> hog;          // --scenario
    std::string error;                      // why it is out of the run
    nlohmann::json* record = nullptr;       // its arm in the results (none for the fallback guest)
};

class Fleet {
public:
    Fleet(const AbConfig& cfg, const Progress& progress, ResultsDoc& doc) : cfg_(cfg), progress_(progress), doc_(doc) {}
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;

    [[nodiscard]] const AbConfig& cfg() const { return cfg_; }
    [[nodiscard]] ResultsDoc& doc() { return doc_; }
    // The guests of the current boot: the arms in cfg().arms order, then
    // the fallback guest if any.
    [[nodiscard]] std::vector<Runner>& runners() { return runners_; }
    // virtio-mem scale: one plan per arm, made before the first boot.
    [[nodiscard]] std::vector<ScalePlan>& plans() { return plans_; }
    // A guest failed: the run stops after what is running now.
    [[nodiscard]] bool failed() const { return failed_; }

    void say(const std::string& s) const;
    // Takes r out of the run: records why (in the errors and r's arm), says
    // so and saves the results.
    void fail(Runner& r, const std::string& what);

    // Boots guest number `boot` of every arm (and, with `last`, the extra
    // guest of the fallback check, which runs after the last boot's rounds).
    void boot_all(int boot, bool last);
    // Stops memhp trace and the peer in every guest that is still in the run,
    // recording what memhp trace lost.
    void stop_tracers();
    // Shuts every guest of the current boot down (the records stay).
    void shutdown_guests();
    // (Re)starts r's memhp-hog; false (recorded in `step`) when it could not
    // get ready, e.g. killed on the way to a margin below the watermarks.
    bool start_hog(Runner& r, std::uint64_t margin, nlohmann::json& step);

private:
    void add_runners(bool last);
    void size_for_scale();
    bool start_guests();
    bool get_ready(Runner& r, int boot);
    void record_guest(Runner& r, int boot, const std::string& param);
    bool attach_peer(Runner& r);

    const AbConfig& cfg_;
    Progress progress_;
    ResultsDoc& doc_;
    std::vector<Runner> runners_;
    std::vector<ScalePlan> plans_;
    bool failed_ = false;
};

}  // namespace memhp::ab::detail
