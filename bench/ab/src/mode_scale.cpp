// SPDX-License-Identifier: Apache-2.0
// memhp ab --scale: the scale ramp, growing each arm's guest one step at a
// time, interleaved across arms; with DIMMs (one --dimm DIMM a step, all
// removed at the end) or with one virtio-mem device (--scale-step a step).
#include <algorithm>
#include <cmath>

#include "memhp/ab/curve.hpp"
#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/procfs.hpp"
#include "memhp/size.hpp"
#include "modes.hpp"
#include "results_doc.hpp"

namespace memhp::ab::detail {

using nlohmann::json;

namespace {

// A scale step's probe figures from the trace records of its ops: each
// phase's own time summed, the add's inclusive time (its nested onlines
// under auto-online) and the memmap of the last add.
void record_probe_step(json& s, const std::vector<json>& ops) {
    for (const char* phase : {"add", "populate", "online"}) {
        std::uint64_t ns = 0;
        for (const auto& o : ops)
            if (o.value("phase", "") == phase) ns += o.value("duration_ns", std::uint64_t{0});
        s[std::string("probe_") + phase + "_s"] = static_cast<double>(ns) / 1e9;
    }
    std::uint64_t inclusive = 0;
    for (const auto& o : ops)
        if (o.value("phase", "") == "add") {
            inclusive += o.value("inclusive_ns", o.value("duration_ns", std::uint64_t{0}));
            s["memmap"] = o.value("memmap", json::object());
        }
    s["probe_add_inclusive_s"] = static_cast<double>(inclusive) / 1e9;
    s["ops"] = ops.size();
    // Sub-phases (trace records with sub_phases_ns): per phase, each
    // function's own time summed over the step's ops; and how far the
    // sub-phases of any one op are from that op's own duration.
    json sub = json::object();
    double worst = 0;
    std::size_t checked = 0;
    for (const auto& o : ops) {
        const auto it = o.find("sub_phases_ns");
        if (it == o.end() || !it->is_object()) continue;
        const std::string phase = o.value("phase", "");
        if (phase != "add" && phase != "online") continue;
        std::uint64_t sum = 0;
        for (const auto& [name, v] : it->items()) {
            if (!v.is_number_unsigned()) continue;
            sum += v.get<std::uint64_t>();
            auto& slot = sub[phase][name];
            slot = (slot.is_number() ? slot.get<double>() : 0.0) + static_cast<double>(v.get<std::uint64_t>()) / 1e9;
        }
        const auto own = o.value("duration_ns", std::uint64_t{0});
        if (own > 0) {
            worst = std::max(worst,
                             std::abs(static_cast<double>(sum) - static_cast<double>(own)) / static_cast<double>(own));
            ++checked;
        }
        if (phase == "online" && o.contains("zone_span") && o["zone_span"].is_object())
            s["zone_spanned_pages"] = o["zone_span"].value("spanned_pages", std::uint64_t{0});
    }
    if (!sub.empty()) {
        s["sub_phases_s"] = sub;
        s["sub_phases_ops"] = checked;
        s["sub_phases_worst_gap"] = worst;  // max over ops of |sum of sub-phases - own time| / own time
    }
}

// The whole ramp: steps that went through, the host's end-to-end time and
// the kernel's (the probes' add + online), each as GiB/s.
json scale_totals(const json& steps, std::uint64_t step_bytes) {
    std::uint64_t ok = 0;
    double e2e = 0, kernel = 0;
    bool probes = true;
    for (const auto& s : steps) {
        if (!s.is_object() || !s.value("ok", false)) continue;
        ++ok;
        e2e += s.value("e2e_s", 0.0);
        if (!s.contains("probe_online_s")) probes = false;
        kernel += s.value("probe_add_s", 0.0) + s.value("probe_online_s", 0.0);
    }
    const double gib = static_cast<double>(ok * step_bytes) / static_cast<double>(1ull << 30);
    json t{
        {"steps_ok", ok}, {"plugged_bytes", ok * step_bytes}, {"e2e_s", e2e}, {"e2e_gib_s", e2e > 0 ? gib / e2e : 0.0}};
    if (probes && ok) {
        t["kernel_s"] = kernel;
        t["kernel_gib_s"] = kernel > 0 ? gib / kernel : 0.0;
        t["host_overhead_s"] = e2e - kernel;
    }
    return t;
}

// Runs one scale step of r (`body` fills in `s`) and appends `s` to r's
// "scale" either way. False when it threw: the step is recorded as failed
// and r is out of the run.
template <class Body>
bool scale_step(Fleet& f, Runner& r, json& s, std::uint64_t step, Body&& body) {
    try {
        body();
    } catch (const Interrupted&) {
        throw;
    } catch (const std::exception& e) {
        s["ok"] = false;
        s["error"] = e.what();
        (*r.record)["scale"].push_back(s);
        f.fail(r, "scale step " + std::to_string(step) + " failed: " + e.what());
        return false;
    }
    (*r.record)["scale"].push_back(s);
    return true;
}

// One DIMM into r's guest, onlined; its times into `s`, the DIMM into `dimms`.
std::string dimm_step(Fleet& f, Runner& r, json& s, std::vector<lab::Dimm>& dimms) {
    const auto& cfg = f.cfg();
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg.timeout);
    auto t = Clock::now();
    auto d = r.mem->add_dimm(cfg.dimm_size, cfg.node, timeout);
    dimms.push_back(d);
    // As in cycle_metrics: under auto-online one wall time
    // until the blocks are online.
    if (r.guest->kernel_onlines()) {
        r.mem->wait_online(d, timeout);
        s["wall_add_s"] = std::chrono::duration<double>(Clock::now() - t).count();
    } else {
        s["wall_add_s"] = std::chrono::duration<double>(Clock::now() - t).count();
        t = Clock::now();
        r.mem->online(d, lab::parse_zone(cfg.zone));
        s["wall_online_s"] = std::chrono::duration<double>(Clock::now() - t).count();
    }
    const auto ops = r.trace ? r.trace->take([&](const std::vector<json>& o) {
        return lab::count_phase(o, "online") >= d.blocks.size();
    })
                             : std::vector<json>{};
    for (const char* phase : {"add", "populate", "online"}) {
        if (!r.trace) break;  // probes=off: wall times only
        std::uint64_t ns = 0;
        for (const auto& o : ops)
            if (o.value("phase", "") == phase) ns += o.value("duration_ns", std::uint64_t{0});
        s[std::string("probe_") + phase + "_s"] = static_cast<double>(ns) / 1e9;
    }
    for (const auto& o : ops)
        if (o.value("phase", "") == "add") s["memmap"] = o.value("memmap", json::object());
    s["ok"] = true;
    std::string line = " " + r.name + " add " + ms(s.value("probe_add_s", s.value("wall_add_s", 0.0)));
    if (s.contains("probe_online_s") || s.contains("wall_online_s"))
        line += " online " + ms(s.value("probe_online_s", s.value("wall_online_s", 0.0)));
    return line + ";";
}

// Takes the ramp's DIMMs out again, newest first; the time into the record.
void dimm_teardown(Fleet& f, std::vector<std::vector<lab::Dimm>>& dimms) {
    for (std::size_t i = 0; i < f.cfg().arms.size(); ++i) {
        auto& r = f.runners()[i];
        if (!r.error.empty() || dimms[i].empty()) continue;
        f.say("[" + r.name + "] offlining and removing " + std::to_string(dimms[i].size()) + " DIMMs");
        const auto t = Clock::now();
        try {
            for (auto it = dimms[i].rbegin(); it != dimms[i].rend(); ++it) {
                r.mem->offline(*it);
                r.mem->remove(*it, std::chrono::duration_cast<std::chrono::milliseconds>(f.cfg().timeout));
            }
            (*r.record)["scale_teardown_s"] = std::chrono::duration<double>(Clock::now() - t).count();
        } catch (const Interrupted&) {
            throw;
        } catch (const std::exception& e) {
            f.fail(r, std::string("tearing the scale ramp down failed: ") + e.what());
        }
    }
}

// Grows r's virtio-mem device to `step` steps and onlines the new blocks
// (the kernel does under auto-online, else the lab writes each block's
// state); the host's and the probes' times into `s`.
std::string virtio_step(Fleet& f, Runner& r, json& s, std::uint64_t step, std::uint64_t step_bytes) {
    const auto& cfg = f.cfg();
    const auto t = Clock::now();
    const auto res = r.mem->resize_virtio_mem(0, step * step_bytes,
                                              std::chrono::duration_cast<std::chrono::milliseconds>(cfg.timeout));
    const double plug_s = std::chrono::duration<double>(Clock::now() - t).count();
    if (res.plugged != step * step_bytes)
        throw Error("the guest plugged " + format_size_exact(res.plugged) + " of the " +
                    format_size_exact(step * step_bytes) + " requested");
    lab::Dimm d;
    d.id = res.device;
    d.blocks = res.blocks_added;
    s["blocks"] = res.blocks_added.size();
    // As in cycle_metrics: under auto-online one wall time until the blocks are online.
    s["wall_add_s"] = plug_s;
    if (!r.guest->kernel_onlines()) {
        const auto t_on = Clock::now();
        r.mem->online(d, lab::parse_zone(cfg.zone));
        s["wall_online_s"] = std::chrono::duration<double>(Clock::now() - t_on).count();
    }
    const double e2e = std::chrono::duration<double>(Clock::now() - t).count();
    s["e2e_s"] = e2e;
    s["e2e_gib_s"] = e2e > 0 ? static_cast<double>(step_bytes) / e2e / static_cast<double>(1ull << 30) : 0.0;
    if (r.trace) {
        // Under auto-online a nested online's record comes before its add's: wait for both.
        const auto ops = r.trace->take([&](const std::vector<json>& o) {
            return lab::count_phase(o, "online") >= d.blocks.size() && lab::count_phase(o, "add") >= d.blocks.size();
        });
        record_probe_step(s, ops);
    }
    s["ok"] = true;
    std::string line = " " + r.name + " " + ms(e2e);
    if (s.contains("probe_online_s"))
        line += " (kernel: add " + ms(s["probe_add_s"]) + ", online " + ms(s["probe_online_s"]) + ")";
    return line + ";";
}

void start_scale_records(Fleet& f) {
    for (auto& r : f.runners())
        if (r.record) (*r.record)["scale"] = json::array();
}

}  // namespace

void plan_virtio_scale(Fleet& f) {
    std::uint64_t avail = 0;
    if (const auto text = try_read_file("/proc/meminfo")) {
        const auto mi = parse_meminfo(*text);
        if (const auto it = mi.find("MemAvailable"); it != mi.end()) avail = it->second * 1024;
    }
    auto& plans = f.plans();
    plans.clear();
    for (const auto& a : f.cfg().arms) {
        try {
            plans.push_back(virtio_scale_plan(f.cfg(), a, avail));
        } catch (const UsageError& e) {
            throw UsageError("arm '" + a.name + "': " + e.what());
        }
        f.say("[" + a.name + "] scale plan: " + plans.back().arithmetic);
    }
}

void scale_ramp(Fleet& f) {
    const auto& cfg = f.cfg();
    const int steps = static_cast<int>(cfg.scale_size / cfg.dimm_size);
    const std::size_t n = cfg.arms.size();
    std::vector<std::vector<lab::Dimm>> dimms(n);
    start_scale_records(f);
    for (int step = 1; step <= steps && !f.failed(); ++step) {
        std::string line = "step " + std::to_string(step) + "/" + std::to_string(steps) + ":";
        for (std::size_t k = 0; k < n && !f.failed(); ++k) {
            const std::size_t i = step % 2 ? k : n - 1 - k;
            auto& r = f.runners()[i];
            json s{{"step", step}, {"present_before_bytes", static_cast<std::uint64_t>(step - 1) * cfg.dimm_size}};
            if (!scale_step(f, r, s, step, [&] { line += dimm_step(f, r, s, dimms[i]); })) break;
        }
        f.say(line);
        f.doc().save();
    }
    for (auto& r : f.runners())
        if (r.record) (*r.record)["scale_analysis"] = scale_analysis(*r.record, cfg.dimm_size);
    dimm_teardown(f, dimms);
}

// Grows each arm's virtio-mem device by one step at a time, onlining the
// step before the next. Per step: the host's end-to-end time from the QMP
// request to the last block online, the probes' add and online times and
// their sub-phases.
void virtio_scale_ramp(Fleet& f) {
    const auto& cfg = f.cfg();
    const auto step_bytes = scale_step_bytes(cfg);
    const auto steps = cfg.scale_size / step_bytes;
    const std::size_t n = cfg.arms.size();
    start_scale_records(f);
    const auto t_ramp = Clock::now();
    for (std::uint64_t step = 1; step <= steps && !f.failed(); ++step) {
        std::string line = "step " + std::to_string(step) + "/" + std::to_string(steps) + ":";
        for (std::size_t k = 0; k < n && !f.failed(); ++k) {
            auto& r = f.runners()[step % 2 ? k : n - 1 - k];
            json s{{"step", step}, {"present_before_bytes", (step - 1) * step_bytes}, {"step_bytes", step_bytes}};
            if (!scale_step(f, r, s, step, [&] { line += virtio_step(f, r, s, step, step_bytes); })) break;
        }
        // Every step in the log would be thousands of lines at 256 GiB: every 16th, and the last.
        if (step % 16 == 0 || step == steps || steps <= 64) f.say(line);
        if (step % 16 == 0 || step == steps) f.doc().save();
    }
    for (auto& r : f.runners()) {
        if (!r.record) continue;
        (*r.record)["scale_analysis"] = scale_analysis(*r.record, step_bytes);
        (*r.record)["scale_total"] = scale_totals((*r.record)["scale"], step_bytes);
    }
    f.say("scale ramp done in " + ms(std::chrono::duration<double>(Clock::now() - t_ramp).count()));
    f.doc().save();
}

}  // namespace memhp::ab::detail
