// SPDX-License-Identifier: Apache-2.0
#include "results_doc.hpp"

#include "memhp/ab/peer.hpp"
#include "memhp/ab/plots.hpp"
#include "memhp/ab/report.hpp"
#include "memhp/ab/results.hpp"
#include "memhp/files.hpp"
#include "memhp/version.hpp"

namespace memhp::ab::detail {

using nlohmann::json;

void ResultsDoc::init(const AbConfig& cfg) {
    json arms = json::array();
    for (const auto& a : cfg.arms)
        arms.push_back({{"name", a.name},
                        {"kernel_spec", a.guest.kernel},
                        {"device", device_name(a.device)},
                        {"memmap_on_memory_requested", a.memmap_on_memory},
                        {"online_requested", lab::online_mode_name(a.guest.online)},
                        {"append", a.guest.append},
                        {"node_mem_bytes", a.guest.node_mem},
                        {"guest", nullptr},
                        {"cycles", json::array()}});
    root_ = {{"schema", kResultsSchema},
             {"memhp_version", kVersion},
             {"title", cfg.title.empty() ? std::string(cfg.scale ? "scale ramp" : "hot-add A/B") : cfg.title},
             {"started", now_iso_utc()},
             {"status", "running"},
             {"options",
              {{"mode", cfg.scale ? "scale" : "cycles"},
               {"cycles", cfg.cycles},
               {"boots", cfg.boots},
               {"dimm_bytes", cfg.dimm_size},
               {"dimms", cfg.dimms},
               {"node", cfg.node},
               {"zone", cfg.zone},
               {"order", "interleaved, alternating (ABBA...)"},
               {"scale_bytes", cfg.scale ? cfg.scale_size : 0},
               {"scale_device", cfg.scale_device == ScaleDevice::VirtioMem ? "virtio-mem" : "dimm"},
               {"scale_step_bytes", cfg.scale ? scale_step_bytes(cfg) : 0},
               {"fallback_kernel", cfg.fallback_kernel},
               {"fallback_bytes", cfg.fallback_size},
               {"peer", cfg.peer}}},
             {"arms", arms},
             {"fallback_check", json::array()},
             {"errors", json::array()}};
    if (cfg.scenario != Scenario::None) {
        root_["options"]["scenario"] = scenario_name(cfg.scenario);
        if (cfg.scenario == Scenario::Pressure) root_["options"]["margins_bytes"] = cfg.margins;
    }
    save();
}

// Guest text (console tails in errors, probe lines) may hold bytes that are
// not UTF-8: they are stored as U+FFFD rather than making the save throw.
void ResultsDoc::save() const {
    write_file_atomic(out_ / "results.json", root_.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
}

bool ResultsDoc::finish(const AbConfig& cfg, Clock::time_point t0, Fleet& fleet) {
    root_["finished"] = now_iso_utc();
    root_["wall_s"] = std::chrono::duration<double>(Clock::now() - t0).count();
    if (cfg.scenario != Scenario::None) root_["scenario"] = scenario_summary(root_);
    for (auto& r : fleet.runners())
        if (r.record && (*r.record)["guest"].is_object() && (*r.record)["guest"].contains("peer"))
            (*r.record)["guest"]["peer"]["phases"] = peer_agreement(*r.record);
    fleet.shutdown_guests();
    save();
    bool plots_ok = true;
    if (cfg.plots) {
        try {
            root_["plots"] = write_plots(root_, cfg.out / "plots");
        } catch (const std::exception& e) {
            plots_ok = false;
            root_["errors"].push_back(std::string("plots: ") + e.what());
        }
    }
    write_summary(cfg);
    save();
    return plots_ok;
}

void ResultsDoc::write_summary(const AbConfig& cfg) {
    std::string summary;
    try {
        summary = summary_markdown(root_, cfg.compare);
    } catch (const BadResults& e) {  // a bug of ours: keep the results, say so
        root_["errors"].push_back(std::string("summary: ") + e.what());
        summary = std::string("## memhp ab\n\nThe summary could not be rendered: ") + e.what() + "\n";
    }
    write_file_atomic(out_ / "summary.md", summary);
}

}  // namespace memhp::ab::detail
