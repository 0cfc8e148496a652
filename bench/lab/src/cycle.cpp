#include "memhp/lab/cycle.hpp"

#include "memhp/stop.hpp"

namespace memhp::lab {

using Clock = std::chrono::steady_clock;

bool CycleRecord::ok() const {
    if (guest_lost || phases.size() != kPhases.size()) return false;
    for (const auto& p : phases)
        if (!p.ok) return false;
    return true;
}

const PhaseRecord* CycleRecord::phase(const std::string& name) const {
    for (const auto& p : phases)
        if (p.phase == name) return &p;
    return nullptr;
}

CycleRecord run_cycle(MemoryLab& lab, const CycleOptions& opts, int index,
                      const std::function<void(const CycleRecord&, const PhaseRecord&)>& on_phase) {
    CycleRecord c;
    c.index = index;
    try {
        c.before = lab.snapshot();
    } catch (const Interrupted&) {
        throw;
    } catch (const std::exception& e) {
        c.guest_lost = true;
        c.phases.push_back({"add", 0, false, std::string("cannot read the guest's memory state: ") + e.what(), 0, {}});
        return c;
    }
    for (const auto& name : kPhases) {
        PhaseRecord p;
        p.phase = name;
        const auto t0 = Clock::now();
        try {
            if (name == "add") c.dimm = lab.add_dimm(opts.dimm_size, opts.node, opts.timeout);
            else if (name == "online") lab.online(c.dimm, opts.zone);
            else if (name == "offline") lab.offline(c.dimm);
            else c.device_deleted = lab.remove(c.dimm, opts.timeout);
            p.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
            if (name == "online") c.zone = lab.zone_of(c.dimm);
            p.after = lab.snapshot();
        } catch (const Interrupted&) {
            throw;
        } catch (const AgentError& e) {
            p.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
            p.ok = false;
            p.error = e.what();
            p.guest_errno = e.guest_errno();
        } catch (const GuestError& e) {
            p.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
            p.ok = false;
            p.error = e.what();
            c.guest_lost = true;
        } catch (const std::exception& e) {
            p.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
            p.ok = false;
            p.error = e.what();
        }
        c.phases.push_back(p);
        if (on_phase) on_phase(c, c.phases.back());
        if (!p.ok) break;
    }
    return c;
}

nlohmann::json to_json(const CycleRecord& c) {
    nlohmann::json phases = nlohmann::json::array();
    for (const auto& p : c.phases) {
        nlohmann::json j{{"phase", p.phase}, {"wall_s", p.wall_s}, {"ok", p.ok}};
        if (!p.ok) {
            j["error"] = p.error;
            if (p.guest_errno) j["errno"] = p.guest_errno;
        } else {
            j["after"] = to_json(p.after);
        }
        phases.push_back(j);
    }
    return {{"index", c.index}, {"ok", c.ok()}, {"dimm", to_json(c.dimm)}, {"zone", c.zone},
            {"device_deleted", c.device_deleted}, {"guest_lost", c.guest_lost}, {"before", to_json(c.before)},
            {"phases", phases}};
}

}  // namespace memhp::lab
