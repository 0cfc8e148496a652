// SPDX-License-Identifier: Apache-2.0
// memhp ab --scenario (scenario.hpp): memhp-hog sets each guest's memory up
// (fragmented, or a margin of free memory under pressure), then `cycles`
// rounds of scenario cycles; pressure repeats that at every margin.
#include "memhp/error.hpp"
#include "memhp/size.hpp"
#include "modes.hpp"
#include "results_doc.hpp"

namespace memhp::ab::detail {

using nlohmann::json;

namespace {

json step_record(const AbConfig& cfg, std::size_t si, std::uint64_t margin) {
    json step{{"step", si + 1}};
    if (cfg.scenario == Scenario::Pressure) step["margin_bytes"] = margin;
    return step;
}

// Starts every arm's hog for step si; per arm, true when it never got
// ready at this margin.
std::vector<bool> start_hogs(Fleet& f, std::size_t si, std::uint64_t margin) {
    const std::size_t n = f.cfg().arms.size();
    std::vector<bool> unreachable(n, false);
    for (std::size_t i = 0; i < n && !f.failed(); ++i) {
        auto& r = f.runners()[i];
        json step = step_record(f.cfg(), si, margin);
        unreachable[i] = !f.start_hog(r, margin, step);
        (*r.record)["scenario_steps"].push_back(step);
    }
    f.doc().save();
    return unreachable;
}

// The progress line's part for a scenario cycle's adds.
std::string adds_line(const Runner& r, const json& scenario) {
    int ok = 0, base = 0, oom = 0;
    std::uint64_t used = 0;
    for (const auto& a : scenario["adds"]) {
        ok += a.value("ok", false);
        base += a.value("base_pages", false);
        oom += a.value("oom_kills", 0) > 0;
        used += a.value("free_consumed_bytes", std::uint64_t{0});
    }
    const auto adds = scenario["adds"].size();
    std::string line = " " + r.name + " " + std::to_string(ok) + "/" + std::to_string(adds) + " added";
    if (adds > static_cast<std::size_t>(ok)) line += ", " + std::to_string(adds - ok) + " failed";
    if (base) line += ", " + std::to_string(base) + " base-page memmap";
    if (oom) line += ", " + std::to_string(oom) + " OOM kill";
    return line + ", free used " + format_size_human(used) + ";";
}

// One scenario cycle of arm r at step si (its hog restarted first if the
// OOM killer took it); the progress line's part for it.
std::string scenario_cycle(Fleet& f, Runner& r, const lab::CycleOptions& base_opts, std::size_t si,
                           std::uint64_t margin, int round, std::size_t pos) {
    const auto& cfg = f.cfg();
    json extra = json::object();
    if (!r.hog || !r.hog->alive()) {  // the OOM killer took it: set it up again
        if (r.hog && r.hog->exit_code()) extra["hog_exit_code"] = *r.hog->exit_code();
        json step = step_record(cfg, si, margin);
        step["restart"] = true;
        const bool ok = f.start_hog(r, margin, step);
        (*r.record)["scenario_steps"].push_back(step);
        if (!ok) return " " + r.name + " skipped (no memhp-hog);";
        extra["hog_restarted"] = true;
    }
    lab::CycleOptions copts = base_opts;
    copts.kernel_onlines = r.guest->kernel_onlines();
    auto sc = run_scenario_cycle(*r.guest, *r.mem, *r.trace, copts, round);
    json cj = lab::to_json(sc.cycle);
    cj["round"] = round;
    cj["position"] = pos;
    cj["metrics"] = cycle_metrics(sc.cycle, sc.ops, cfg.node);
    cj["ops"] = sc.ops;
    sc.scenario["step"] = si + 1;
    if (cfg.scenario == Scenario::Pressure) sc.scenario["margin_bytes"] = margin;
    sc.scenario["hog_pid"] = r.hog ? r.hog->pid() : -1;
    sc.scenario.update(extra);
    cj["scenario"] = sc.scenario;
    (*r.record)["cycles"].push_back(cj);
    const std::string line = adds_line(r, sc.scenario);
    if (sc.cycle.guest_lost)
        f.fail(r, "guest lost in scenario cycle " + std::to_string(round) + ": " + sc.cycle.cleanup);
    return line;
}

void stop_hogs(Fleet& f) {
    for (auto& r : f.runners()) {
        if (!r.hog) continue;
        try {
            r.hog->stop();
        } catch (const Interrupted&) {
            throw;
        } catch (const std::exception& e) {
            f.doc().root()["errors"].push_back(r.name + ": stopping memhp-hog: " + e.what());
        }
        r.hog.reset();
    }
}

}  // namespace

void scenario_steps(Fleet& f) {
    const auto& cfg = f.cfg();
    const lab::CycleOptions base_opts{cfg.dimm_size, cfg.node, lab::parse_zone(cfg.zone),
                                      std::chrono::duration_cast<std::chrono::milliseconds>(cfg.timeout), cfg.dimms};
    const std::vector<std::uint64_t> margins =
        cfg.scenario == Scenario::Pressure ? cfg.margins : std::vector<std::uint64_t>{0};
    const std::size_t n = cfg.arms.size();
    int round = 0;
    for (std::size_t si = 0; si < margins.size() && !f.failed(); ++si) {
        const auto margin = margins[si];
        const std::string label =
            cfg.scenario == Scenario::Pressure ? "margin " + format_size_human(margin) : "fragmented";
        const auto unreachable = start_hogs(f, si, margin);  // the hog never got ready at this margin
        for (int k = 1; k <= cfg.cycles && !f.failed(); ++k) {
            ++round;
            std::string line = label + ", round " + std::to_string(k) + "/" + std::to_string(cfg.cycles) + ":";
            for (std::size_t pos = 0; pos < n && !f.failed(); ++pos) {
                const std::size_t i = round % 2 ? pos : n - 1 - pos;
                auto& r = f.runners()[i];
                if (!r.error.empty()) continue;
                if (unreachable[i])
                    line += " " + r.name + " skipped (memhp-hog could not hold the margin);";
                else
                    line += scenario_cycle(f, r, base_opts, si, margin, round, pos);
            }
            f.say(line);
            f.doc().save();
        }
        stop_hogs(f);
    }
}

}  // namespace memhp::ab::detail
