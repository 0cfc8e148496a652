// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/cycle.hpp"

#include "memhp/size.hpp"
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

namespace {

// After a failed phase, takes the cycle's DIMMs out again where that cannot
// hang: blocks that never went online (or were offlined) are removed; blocks
// still online after a failed offline stay (an eject would wait for an offline
// the kernel already refused). Returns what it did, for the record.
std::string clean_up(MemoryLab& lab, const CycleDevice& dev, const CycleRecord& c, const std::string& failed,
                     const CycleOptions& opts) {
    if (c.dimms.empty() || failed == "remove") return {};
    std::string done;
    int removed = 0;
    for (const auto& d : c.dimms) {
        try {
            if (failed == "online")
                lab.offline(d);  // some blocks may be online
            else if (failed == "offline")
                return "left " + std::to_string(c.dimms.size()) + " DIMM(s) in the guest: offline failed";
            (void)dev.remove(lab, d, opts);
            ++removed;
        } catch (const Interrupted&) {
            throw;
        } catch (const std::exception& e) {
            done += (done.empty() ? "" : "; ") + std::string("could not take out ") + d.id + ": " + e.what();
        }
    }
    return "removed " + std::to_string(removed) + " DIMM(s)" + (done.empty() ? "" : "; " + done);
}

}  // namespace

CycleDevice dimm_device() {
    CycleDevice d;
    d.name = "dimm";
    d.add = [](MemoryLab& lab, const CycleOptions& o) {
        std::vector<Dimm> out;
        for (int i = 0; i < o.dimms; ++i) out.push_back(lab.add_dimm(o.dimm_size, o.node, o.timeout));
        return out;
    };
    d.remove = [](MemoryLab& lab, const Dimm& dimm, const CycleOptions& o) { return lab.remove(dimm, o.timeout); };
    return d;
}

CycleDevice virtio_mem_device(std::size_t index) {
    CycleDevice d;
    d.name = "virtio-mem";
    d.add = [index](MemoryLab& lab, const CycleOptions& o) {
        const auto want = o.dimm_size * static_cast<std::uint64_t>(o.dimms);
        const auto r = lab.resize_virtio_mem(index, want, o.timeout);
        Dimm dimm;
        dimm.id = r.device;
        dimm.node = o.node;
        dimm.size = r.plugged - r.plugged_before;
        dimm.blocks = r.blocks_added;
        if (r.plugged != want || r.blocks_added.size() != want / lab.block_size()) {
            // Take back what was plugged (offline blocks first), so the next cycle starts empty.
            std::string back = "; requested-size 0 took it back";
            try {
                Dimm part;
                part.blocks = r.blocks_added;
                lab.offline(part);
                if (lab.resize_virtio_mem(index, 0, o.timeout).plugged != 0)
                    back = "; it could not all be unplugged again";
            } catch (const Interrupted&) {
                throw;
            } catch (const std::exception& e) {
                back = std::string("; unplugging it again failed: ") + e.what();
            }
            throw Error(r.device + ": the guest plugged " + format_size_exact(r.plugged) + " (" +
                        std::to_string(r.blocks_added.size()) + " new blocks) of the " + format_size_exact(want) +
                        " requested" + back);
        }
        return std::vector<Dimm>{dimm};
    };
    d.remove = [index](MemoryLab& lab, const Dimm& dimm, const CycleOptions& o) {
        const auto r = lab.resize_virtio_mem(index, 0, o.timeout);
        if (r.plugged != 0)
            throw Error(r.device + ": the guest still has " + format_size_exact(r.plugged) +
                        " plugged after requested-size 0 (blocks still online or unmovable?)");
        (void)dimm;
        return true;
    };
    return d;
}

CycleRecord run_cycle(MemoryLab& lab, const CycleOptions& opts, int index,
                      const std::function<void(const CycleRecord&, const PhaseRecord&)>& on_phase) {
    return run_cycle(lab, dimm_device(), opts, index, on_phase);
}

CycleRecord run_cycle(MemoryLab& lab, const CycleDevice& device, const CycleOptions& opts, int index,
                      const std::function<void(const CycleRecord&, const PhaseRecord&)>& on_phase) {
    CycleRecord c;
    c.index = index;
    c.device = device.name;
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
            if (name == "add") {
                c.dimms = device.add(lab, opts);
            } else if (name == "online") {
                // Under auto-online the add has onlined (or is onlining) the blocks.
                c.online_by = opts.kernel_onlines ? "kernel" : device.onlines_in_add ? "device" : "lab";
                for (const auto& d : c.dimms)
                    c.online_by != "lab" ? lab.wait_online(d, opts.timeout) : lab.online(d, opts.zone);
            } else if (name == "offline") {
                for (const auto& d : c.dimms) lab.offline(d);
            } else {
                c.device_deleted = true;
                for (const auto& d : c.dimms) c.device_deleted = device.remove(lab, d, opts) && c.device_deleted;
            }
            p.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
            if (name == "online") c.zone = lab.zone_of(c.dimms.front());
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
        if (!p.ok) {
            if (!c.guest_lost) {
                try {
                    (void)lab.snapshot();  // still answering? then tidy up
                    c.cleanup = clean_up(lab, device, c, name, opts);
                } catch (const Interrupted&) {
                    throw;
                } catch (const std::exception& e) {
                    c.guest_lost = true;
                    c.cleanup = std::string("guest stopped answering: ") + e.what();
                }
            }
            break;
        }
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
    nlohmann::json dimms = nlohmann::json::array();
    for (const auto& d : c.dimms) dimms.push_back(to_json(d));
    nlohmann::json j{{"index", c.index},
                     {"device", c.device},
                     {"ok", c.ok()},
                     {"dimms", dimms},
                     {"zone", c.zone},
                     {"online_by", c.online_by},
                     {"device_deleted", c.device_deleted},
                     {"guest_lost", c.guest_lost},
                     {"before", to_json(c.before)},
                     {"phases", phases}};
    if (!c.cleanup.empty()) j["cleanup"] = c.cleanup;
    return j;
}

}  // namespace memhp::lab
