// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/runner.hpp"

#include <ctime>
#include <optional>
#include <sstream>

#include "fleet.hpp"
#include "memhp/error.hpp"
#include "memhp/lab/cycle.hpp"
#include "memhp/size.hpp"
#include "modes.hpp"
#include "results_doc.hpp"

namespace memhp::ab {

using detail::kBlock;
using detail::kPage;
using nlohmann::json;

namespace {

std::string mmo_word(const std::optional<bool>& v) { return !v ? "default" : *v ? "on" : "off"; }

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep)) out.push_back(item);
    return out;
}

}  // namespace

std::string now_iso_utc() {
    char buf[32];
    std::time_t t = std::time(nullptr);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

ArmSpec parse_arm(const std::string& text, const lab::GuestConfig& base) {
    ArmSpec a;
    a.guest = base;
    a.guest.append = base.append;
    const auto colon = text.find(':');
    a.name = text.substr(0, colon);
    if (!valid_arm_name(a.name))
        throw UsageError("--arm '" + text +
                         "': the name must be 1-32 letters, digits, '.', '_' or '-' (NAME:key=value,...)");
    a.memmap_on_memory = mmo_word(base.memmap_on_memory);
    if (colon == std::string::npos) return a;
    for (const auto& kv : split(text.substr(colon + 1), ',')) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos)
            throw UsageError("--arm '" + text + "': '" + kv +
                             "' is not key=value (keys: kernel, device, mmo, online, probes, append, node-mem)");
        const auto key = kv.substr(0, eq), value = kv.substr(eq + 1);
        if (key == "device") {
            a.device = parse_device(value);
            if (auto why = device_unavailable(a.device)) throw UsageError("--arm '" + text + "': " + *why);
        } else if (key == "kernel") {
            a.guest.kernel = value;
            (void)lab::classify_kernel_spec(value);
        } else if (key == "mmo" || key == "memmap-on-memory") {
            if (value == "on" || value == "1")
                a.guest.memmap_on_memory = true;
            else if (value == "off" || value == "0")
                a.guest.memmap_on_memory = false;
            else if (value == "default")
                a.guest.memmap_on_memory.reset();
            else
                throw UsageError("--arm '" + text + "': mmo must be on, off or default");
            a.memmap_on_memory = mmo_word(a.guest.memmap_on_memory);
        } else if (key == "probes") {
            if (value != "on" && value != "off") throw UsageError("--arm '" + text + "': probes must be on or off");
            a.probes = value == "on";
        } else if (key == "online") {
            a.guest.online = lab::parse_online_mode(value);
        } else if (key == "append") {
            a.guest.append.push_back(value);
        } else if (key == "node-mem") {
            a.guest.node_mem.clear();
            for (const auto& item : split(value, '+')) a.guest.node_mem.push_back(item == "0" ? 0 : parse_size(item));
        } else {
            throw UsageError("--arm '" + text + "': unknown key '" + key +
                             "' (keys: kernel, device, mmo, online, probes, append, node-mem)");
        }
    }
    lab::validate(a.guest);
    return a;
}

std::vector<ArmSpec> default_arms(const lab::GuestConfig& base) {
    return {parse_arm("page-alloc:mmo=off", base), parse_arm("altmap:mmo=on", base)};
}

void validate(const AbConfig& cfg) {
    if (cfg.arms.empty()) throw UsageError("no arms to run");
    for (std::size_t i = 0; i < cfg.arms.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (cfg.arms[i].name == cfg.arms[j].name) throw UsageError("two arms are named '" + cfg.arms[i].name + "'");
    if (cfg.dimm_size == 0 || cfg.dimm_size % kBlock)
        throw UsageError("--dimm " + format_size_exact(cfg.dimm_size) +
                         " is not a multiple of the x86 guest's 128M memory block size");
    if (cfg.fallback_size % kBlock)
        throw UsageError("--fallback-size " + format_size_exact(cfg.fallback_size) + " is not a multiple of 128M");
    if (cfg.scale_device == ScaleDevice::Dimm && cfg.scale_step)
        throw UsageError("--scale-step is for --device virtio-mem; a DIMM scale run grows by --dimm");
    if (cfg.scale && cfg.scale_device == ScaleDevice::VirtioMem) {
        for (const auto& a : cfg.arms) (void)virtio_scale_plan(cfg, a, 0);  // sizes and steps, with the arithmetic
    } else if (cfg.scale && (cfg.scale_size == 0 || cfg.scale_size % cfg.dimm_size))
        throw UsageError("--scale-size " + format_size_exact(cfg.scale_size) + " is not a multiple of --dimm " +
                         format_size_exact(cfg.dimm_size));
    if (cfg.dimms < 1) throw UsageError("--dimms must be at least 1");
    for (const auto& a : cfg.arms)
        if (a.device != DeviceKind::Dimm && (cfg.scale || cfg.scenario != Scenario::None))
            throw UsageError("arm '" + a.name + "': device=" + device_name(a.device) +
                             " runs the cycle rounds; --scale and --scenario hot-add DIMMs only");
    for (const auto& a : cfg.arms)
        if (a.device == DeviceKind::Dax && cfg.node != 1)
            throw UsageError("arm '" + a.name + "': device=dax puts its pmem range on node 1; --node must be 1");
    if (cfg.boots < 1) throw UsageError("--boots must be at least 1");
    if (cfg.boots > 1 && (cfg.scale || cfg.scenario != Scenario::None))
        throw UsageError("--boots runs with the cycle rounds, not with --scale or --scenario");
    if (cfg.boots > cfg.cycles)
        throw UsageError("--boots " + std::to_string(cfg.boots) + " is more than --cycles " +
                         std::to_string(cfg.cycles) + ": every boot needs at least one round (raise --cycles)");
    if (cfg.scenario != Scenario::None && cfg.scale) throw UsageError("--scenario and --scale do not go together");
    if (cfg.scenario == Scenario::Pressure && cfg.margins.empty())
        throw UsageError("--scenario pressure needs --margins (e.g. 64M,48M)");
    for (const auto& a : cfg.arms)
        if (cfg.node >= static_cast<int>(a.guest.node_mem.size()))
            throw UsageError("--node " + std::to_string(cfg.node) + " does not exist in arm '" + a.name +
                             "': its guest has " + std::to_string(a.guest.node_mem.size()) + " node(s)");
    (void)lab::parse_zone(cfg.zone);
    if (cfg.out.empty()) throw UsageError("no output directory");
    for (const auto& a : cfg.arms)
        if (!a.probes && (cfg.scenario != Scenario::None || !cfg.peer.empty()))
            throw UsageError("arm '" + a.name +
                             "': probes=off does not go with --scenario or --peer, which read memhp's probes");
    if (!cfg.peer.empty()) {
        if (cfg.peer != "bpftrace") throw UsageError("--peer " + cfg.peer + ": the only peer is bpftrace");
        if (cfg.scale || cfg.scenario != Scenario::None)
            throw UsageError("--peer runs with the cycle rounds, not with --scale or --scenario");
        if (!find_program("bpftrace"))
            throw UsageError(
                "--peer bpftrace: bpftrace is not installed; run scripts/install-deps.sh (Debian package bpftrace)");
    }
}

std::uint64_t scale_step_bytes(const AbConfig& cfg) {
    if (cfg.scale_device == ScaleDevice::Dimm) return cfg.dimm_size;
    return cfg.scale_step ? cfg.scale_step : kBlock;
}

ScalePlan virtio_scale_plan(const AbConfig& cfg, const ArmSpec& arm, std::uint64_t host_available) {
    ScaleRequest q;
    q.device = ScaleDevice::VirtioMem;
    q.plug_bytes = cfg.scale_size;
    q.step_bytes = scale_step_bytes(cfg);
    q.block_bytes = kBlock;
    q.base_boot_bytes = arm.guest.node_mem.empty() ? std::uint64_t{1} << 30 : arm.guest.node_mem.front();
    q.host_available_bytes = host_available;
    q.guests = static_cast<unsigned>(cfg.arms.size());  // every arm's guest runs at once
    return plan_scale(q);
}

json cycle_metrics(const lab::CycleRecord& c, const std::vector<json>& ops, int node) {
    json m = json::object();
    double total = 0;
    // When the kernel onlines, the host sees the blocks appear and go online
    // within one add: where it draws the line between the two is a polling
    // race (measured in an A/A: 1.2 ms in one arm, 22.8 ms in the other), so
    // wall_add_s runs until every block is online and there is no
    // wall_online_s. The probes time the nested online on its own.
    const bool kernel_onlines = c.online_by != "lab";  // the kernel, or the device's add (dax/kmem)
    for (const auto& p : c.phases) {
        total += p.wall_s;
        if (kernel_onlines && p.phase == "online") {
            if (m.contains("wall_add_s")) m["wall_add_s"] = m["wall_add_s"].get<double>() + p.wall_s;
            continue;
        }
        m["wall_" + p.phase + "_s"] = p.wall_s;
    }
    if (c.ok()) m["wall_cycle_s"] = total;
    for (const char* phase : {"add", "populate", "online", "offline", "remove"}) {
        std::uint64_t ns = 0;
        std::size_t n = 0;
        for (const auto& o : ops)
            if (o.value("phase", "") == phase) {
                ns += o.value("duration_ns", std::uint64_t{0});
                ++n;
            }
        if (n) m[std::string("probe_") + phase + "_s"] = static_cast<double>(ns) / 1e9;
    }
    // Auto-online: probe_add_s is the adds' own time (trace schema 3), the
    // inclusive time and the nested onlines beside it.
    std::uint64_t inclusive = 0, nested = 0;
    std::size_t n_adds = 0;
    for (const auto& o : ops) {
        if (o.value("phase", "") == "add") {
            ++n_adds;
            inclusive += o.value("inclusive_ns", o.value("duration_ns", std::uint64_t{0}));
        }
        if (o.value("parent_op_id", std::uint64_t{0}) != 0) ++nested;
    }
    if (n_adds) m["probe_add_inclusive_s"] = static_cast<double>(inclusive) / 1e9;
    m["probe_nested_ops"] = nested;
    std::uint64_t alt = 0, buddy = 0, pt = 0, remote = 0, free_b = 0;
    std::size_t adds = 0;
    for (const auto& o : ops) {
        if (o.value("phase", "") != "add") continue;
        ++adds;
        const auto mm = o.value("memmap", json::object());
        alt += mm.value("altmap_pages", std::uint64_t{0});
        buddy += mm.value("buddy_pages", std::uint64_t{0});
        pt += mm.value("pagetable_pages", std::uint64_t{0});
        remote += mm.value("remote_pages", std::uint64_t{0});
        free_b += o.value("free_bytes_consumed", std::uint64_t{0});
    }
    if (adds) {
        m["memmap_altmap_bytes"] = alt * kPage;
        m["memmap_page_allocator_bytes"] = buddy * kPage;
        m["memmap_page_table_bytes"] = pt * kPage;
        m["memmap_remote_bytes"] = remote * kPage;
        m["free_consumed_bytes"] = free_b;
    }
    if (const auto* add = c.phase("add"); add && add->ok)
        m["memfree_drop_at_add_bytes"] =
            (static_cast<double>(c.before.mem_free_kb) - static_cast<double>(add->after.mem_free_kb)) * 1024;
    if (const auto* on = c.phase("online"); on && on->ok)
        m["node_memtotal_after_online_bytes"] = on->after.node(node).total_kb * 1024;
    return m;
}

namespace {

// One run: boots the fleet, runs the mode the options ask for, and
// finishes the results document whatever happens.
class AbRun {
public:
    AbRun(const AbConfig& cfg, const Progress& progress, json& results)
        : cfg_(cfg), doc_(results, cfg.out), fleet_(cfg, progress, doc_) {}

    int run() {
        t0_ = detail::Clock::now();
        if (cfg_.scale && cfg_.scale_device == ScaleDevice::VirtioMem) detail::plan_virtio_scale(fleet_);
        std::filesystem::create_directories(cfg_.out);
        doc_.init(cfg_);
        try {
            if (cfg_.scale || cfg_.scenario != Scenario::None)
                one_boot();
            else
                boots();
            if (!fleet_.failed() && !cfg_.scale && cfg_.scenario == Scenario::None) detail::fallback_checks(fleet_);
            fleet_.stop_tracers();
            doc_.root()["status"] = fleet_.failed() ? "failed" : "complete";
        } catch (const Interrupted&) {
            doc_.root()["status"] = "interrupted";
            doc_.root()["errors"].push_back("interrupted by a signal; the cycles measured so far are kept");
            (void)doc_.finish(cfg_, t0_, fleet_);
            throw;
        }
        const bool plots_ok = doc_.finish(cfg_, t0_, fleet_);
        int bad = 0;
        for (const auto& a : doc_.root()["arms"])
            for (const auto& c : a["cycles"])  // a scenario's failed add is a result, not a failure
                bad += !c.value("ok", false) && !c.value("scenario", json::object()).value("harness_ok", false);
        if (bad) fleet_.say(std::to_string(bad) + " cycle(s) failed; see the results");
        return fleet_.failed() || bad || !plots_ok ? 1 : 0;
    }

private:
    // Scale and scenario runs: one boot of every arm.
    void one_boot() {
        fleet_.boot_all(1, true);
        if (fleet_.failed()) return;
        if (cfg_.scale && cfg_.scale_device == ScaleDevice::VirtioMem)
            detail::virtio_scale_ramp(fleet_);
        else if (cfg_.scale)
            detail::scale_ramp(fleet_);
        else
            detail::scenario_steps(fleet_);
    }

    // Boot b runs rounds [first, last]; every arm reboots at once.
    void boots() {
        int first = 1;
        for (int b = 1; b <= cfg_.boots && !fleet_.failed(); ++b) {
            const int last = cfg_.cycles * b / cfg_.boots;
            if (b > 1) {
                fleet_.stop_tracers();
                fleet_.shutdown_guests();
            }
            fleet_.boot_all(b, b == cfg_.boots);
            if (!fleet_.failed()) detail::rounds(fleet_, b, first, last);
            first = last + 1;
        }
    }

    const AbConfig& cfg_;
    detail::ResultsDoc doc_;
    detail::Fleet fleet_;
    detail::Clock::time_point t0_;
};

}  // namespace

int run_ab(const AbConfig& cfg, const Progress& progress, json& results) {
    validate(cfg);
    AbRun run(cfg, progress, results);
    return run.run();
}

}  // namespace memhp::ab
