// SPDX-License-Identifier: Apache-2.0
// memhp ab's rounds: each round runs one hot-plug cycle per arm.
#include <optional>

#include "memhp/error.hpp"
#include "memhp/lab/cycle.hpp"
#include "memhp/size.hpp"
#include "modes.hpp"
#include "results_doc.hpp"

namespace memhp::ab::detail {

using nlohmann::json;

namespace {

// Tracer `t`'s records of the cycle that just ran: waits until every
// expected remove (or add) arrived, `want` of each.
std::vector<json> take_ops(lab::GuestTrace& t, const lab::CycleRecord& c, std::size_t want) {
    const bool complete = c.ok();
    return t.take(
        [&](const std::vector<json>& ops) {
            return complete ? lab::count_phase(ops, "remove") >= want : lab::count_phase(ops, "add") >= want;
        },
        std::chrono::milliseconds(complete ? 10000 : 2000));
}

// A fixed CPU-bound workload in the guest, timed from the host: it does
// not depend on the arm, so it measures how fast the host runs the guest
// right now (the gate's drift reference). Under TCG about 0.1-0.3 s.
double reference_seconds(Runner& r) {
    const auto t = Clock::now();
    const auto res = r.guest->agent().sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done", std::chrono::seconds(60));
    if (!res.ok()) throw Error("the reference workload failed in the guest: " + res.err);
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::optional<double> try_reference(const AbConfig& cfg, Runner& r) {
    if (!cfg.reference) return std::nullopt;
    try {
        return reference_seconds(r);
    } catch (const Interrupted&) {
        throw;
    } catch (const std::exception&) {
        // A guest that died shows in the cycle itself (guest_lost,
        // with QEMU's own words); the cycle just lacks its reference.
        return std::nullopt;
    }
}

// One cycle of arm r, recorded in its arm; the progress line's part for it.
std::string one_cycle(Fleet& f, Runner& r, const lab::CycleOptions& base_opts, int boot, int round, std::size_t pos) {
    const auto& cfg = f.cfg();
    const std::optional<double> reference = try_reference(cfg, r);
    lab::CycleOptions copts = base_opts;
    copts.kernel_onlines = r.guest->kernel_onlines();
    auto c = r.device->cycle(*r.guest, *r.mem, copts, round);
    const std::size_t want = r.device->ops_per_cycle(c);
    std::vector<json> ops, peer_ops;
    if (!c.guest_lost) {
        try {
            if (r.trace) ops = take_ops(*r.trace, c, want);
            if (r.peer) peer_ops = take_ops(*r.peer, c, want);
        } catch (const Interrupted&) {
            throw;
        } catch (const std::exception& e) {
            c.guest_lost = true;
            c.cleanup = std::string("lost the guest reading the trace: ") + e.what();
        }
    }
    json cj = lab::to_json(c);
    cj["round"] = round;
    cj["boot"] = boot;
    cj["position"] = pos;  // 0 = ran first in its round
    if (reference) cj["reference_s"] = *reference;
    cj["metrics"] = cycle_metrics(c, ops, cfg.node);
    cj["ops"] = ops;
    if (r.peer) cj["peer_ops"] = peer_ops;
    if (r.trace && c.ok() && lab::count_phase(ops, "add") < want) {
        cj["ok"] = false;
        cj["error"] = "memhp's probes reported no add for this cycle";
    }
    (*r.record)["cycles"].push_back(cj);
    const auto& m = cj["metrics"];
    std::string line = " " + r.name + (cj["ok"].get<bool>() ? "" : " FAILED");
    if (m.contains("probe_add_s")) line += " add " + ms(m["probe_add_s"]);
    if (m.contains("probe_online_s")) line += " online " + ms(m["probe_online_s"]);
    if (m.contains("free_consumed_bytes"))
        line += " free-used " + format_size_human(m["free_consumed_bytes"].get<std::uint64_t>());
    line += ";";
    if (c.guest_lost) {
        std::string why = "guest lost in cycle " + std::to_string(round);
        for (const auto& p : c.phases)
            if (!p.ok) why += " (" + p.phase + ": " + p.error + ")";
        f.fail(r, why);
    }
    return line;
}

}  // namespace

void rounds(Fleet& f, int boot, int first, int last) {
    const auto& cfg = f.cfg();
    const lab::CycleOptions base_opts{cfg.dimm_size, cfg.node, lab::parse_zone(cfg.zone),
                                      std::chrono::duration_cast<std::chrono::milliseconds>(cfg.timeout), cfg.dimms};
    const std::size_t n = cfg.arms.size();
    for (int round = first; round <= last && !f.failed(); ++round) {
        std::string line = "round " + std::to_string(round) + "/" + std::to_string(cfg.cycles) +
                           (cfg.boots > 1 ? " (boot " + std::to_string(boot) + ")" : std::string()) + ":";
        // ABBA...: the arm that goes first alternates, so slow drift
        // of the machine lands on both arms alike.
        for (std::size_t k = 0; k < n && !f.failed(); ++k)
            line += one_cycle(f, f.runners()[round % 2 ? k : n - 1 - k], base_opts, boot, round, k);
        f.say(line);
        f.doc().save();
    }
}

}  // namespace memhp::ab::detail
