// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/runner.hpp"

#include <algorithm>
#include <cmath>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <optional>
#include <sstream>

#include "memhp/lab/guest_trace.hpp"
#include "memhp/ab/curve.hpp"
#include "memhp/ab/peer.hpp"
#include "memhp/ab/plots.hpp"
#include "memhp/files.hpp"
#include "memhp/lab/cycle.hpp"
#include "memhp/process.hpp"
#include "memhp/procfs.hpp"
#include "memhp/size.hpp"
#include "memhp/stop.hpp"
#include "memhp/version.hpp"

namespace memhp::ab {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kBlock = std::uint64_t{128} << 20;  // x86-64 memory block

namespace {

std::string mmo_word(const std::optional<bool>& v) { return !v ? "default" : *v ? "on" : "off"; }

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep)) out.push_back(item);
    return out;
}


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
            worst = std::max(worst, std::abs(static_cast<double>(sum) - static_cast<double>(own)) / static_cast<double>(own));
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
    json t{{"steps_ok", ok}, {"plugged_bytes", ok * step_bytes}, {"e2e_s", e2e}, {"e2e_gib_s", e2e > 0 ? gib / e2e : 0.0}};
    if (probes && ok) {
        t["kernel_s"] = kernel;
        t["kernel_gib_s"] = kernel > 0 ? gib / kernel : 0.0;
        t["host_overhead_s"] = e2e - kernel;
    }
    return t;
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
        throw UsageError("--arm '" + text + "': the name must be 1-32 letters, digits, '.', '_' or '-' (NAME:key=value,...)");
    a.memmap_on_memory = mmo_word(base.memmap_on_memory);
    if (colon == std::string::npos) return a;
    for (const auto& kv : split(text.substr(colon + 1), ',')) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos)
            throw UsageError("--arm '" + text + "': '" + kv + "' is not key=value (keys: kernel, device, mmo, online, probes, append, node-mem)");
        const auto key = kv.substr(0, eq), value = kv.substr(eq + 1);
        if (key == "device") {
            a.device = parse_device(value);
            if (auto why = device_unavailable(a.device)) throw UsageError("--arm '" + text + "': " + *why);
        } else if (key == "kernel") {
            a.guest.kernel = value;
            (void)lab::classify_kernel_spec(value);
        } else if (key == "mmo" || key == "memmap-on-memory") {
            if (value == "on" || value == "1") a.guest.memmap_on_memory = true;
            else if (value == "off" || value == "0") a.guest.memmap_on_memory = false;
            else if (value == "default") a.guest.memmap_on_memory.reset();
            else throw UsageError("--arm '" + text + "': mmo must be on, off or default");
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
            throw UsageError("--arm '" + text + "': unknown key '" + key + "' (keys: kernel, device, mmo, online, probes, append, node-mem)");
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
        throw UsageError("--boots " + std::to_string(cfg.boots) + " is more than --cycles " + std::to_string(cfg.cycles) +
                         ": every boot needs at least one round (raise --cycles)");
    if (cfg.scenario != Scenario::None && cfg.scale) throw UsageError("--scenario and --scale do not go together");
    if (cfg.scenario == Scenario::Pressure && cfg.margins.empty())
        throw UsageError("--scenario pressure needs --margins (e.g. 64M,48M)");
    for (const auto& a : cfg.arms)
        if (cfg.node >= static_cast<int>(a.guest.node_mem.size()))
            throw UsageError("--node " + std::to_string(cfg.node) + " does not exist in arm '" + a.name + "': its guest has " +
                             std::to_string(a.guest.node_mem.size()) + " node(s)");
    (void)lab::parse_zone(cfg.zone);
    if (cfg.out.empty()) throw UsageError("no output directory");
    for (const auto& a : cfg.arms)
        if (!a.probes && (cfg.scenario != Scenario::None || !cfg.peer.empty()))
            throw UsageError("arm '" + a.name + "': probes=off does not go with --scenario or --peer, which read memhp's probes");
    if (!cfg.peer.empty()) {
        if (cfg.peer != "bpftrace") throw UsageError("--peer " + cfg.peer + ": the only peer is bpftrace");
        if (cfg.scale || cfg.scenario != Scenario::None)
            throw UsageError("--peer runs with the cycle rounds, not with --scale or --scenario");
        if (!find_program("bpftrace"))
            throw UsageError("--peer bpftrace: bpftrace is not installed; run scripts/install-deps.sh (Debian package bpftrace)");
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

// One guest of the run: an arm, or the extra guest of the fallback check.
struct Runner {
    std::string name;
    lab::GuestConfig config;
    std::string mmo_asked;
    bool probes = true;  // false: no memhp trace in this guest (probes=off)
    bool is_arm = true;
    std::unique_ptr<HotplugDevice> device;  // what its cycles hot-plug
    std::unique_ptr<lab::Guest> guest;
    std::unique_ptr<lab::MemoryLab> mem;
    std::unique_ptr<lab::GuestTrace> trace;
    std::unique_ptr<lab::GuestTrace> peer;  // --peer
    std::unique_ptr<GuestHog> hog;  // --scenario
    std::string error;  // why it is out of the run
    json* record = nullptr;
};

std::string ms(double s) {
    char b[32];
    std::snprintf(b, sizeof b, "%.0f ms", s * 1e3);
    return b;
}

class AbRun {
public:
    AbRun(const AbConfig& cfg, const Progress& progress, json& results)
        : cfg_(cfg), progress_(progress), results_(results) {}

    int run() {
        t0_ = Clock::now();
        if (cfg_.scale && cfg_.scale_device == ScaleDevice::VirtioMem) plan_virtio_scale();
        std::filesystem::create_directories(cfg_.out);
        init_results();
        try {
            if (cfg_.scale || cfg_.scenario != Scenario::None) {
                boot_all(1, true);
                if (!failed_ && cfg_.scale && cfg_.scale_device == ScaleDevice::VirtioMem) virtio_scale_ramp();
                else if (!failed_ && cfg_.scale) scale_ramp();
                else if (!failed_) scenario_steps();
            } else {
                // Boot b runs rounds [first, last]; every arm reboots at once.
                int first = 1;
                for (int b = 1; b <= cfg_.boots && !failed_; ++b) {
                    const int last = cfg_.cycles * b / cfg_.boots;
                    if (b > 1) {
                        stop_tracers();
                        shutdown_guests();
                    }
                    boot_all(b, b == cfg_.boots);
                    if (!failed_) rounds(b, first, last);
                    first = last + 1;
                }
            }
            if (!failed_ && !cfg_.scale && cfg_.scenario == Scenario::None) fallback_checks();
            stop_tracers();
            results_["status"] = failed_ ? "failed" : "complete";
        } catch (const Interrupted&) {
            results_["status"] = "interrupted";
            results_["errors"].push_back("interrupted by a signal; the cycles measured so far are kept");
            finish();
            throw;
        }
        finish();
        int bad = 0;
        for (const auto& a : results_["arms"])
            for (const auto& c : a["cycles"])  // a scenario's failed add is a result, not a failure
                bad += !c.value("ok", false) && !c.value("scenario", json::object()).value("harness_ok", false);
        if (bad) say(std::to_string(bad) + " cycle(s) failed; see the results");
        return failed_ || bad || plot_failed_ ? 1 : 0;
    }

private:
    void say(const std::string& s) {
        if (progress_) progress_(s);
    }

    // Guest text (console tails in errors, probe lines) may hold bytes that are
    // not UTF-8: they are stored as U+FFFD rather than making the save throw.
    void save() {
        write_file_atomic(cfg_.out / "results.json", results_.dump(1, ' ', false, json::error_handler_t::replace) + "\n");
    }

    void init_results() {
        json arms = json::array();
        for (const auto& a : cfg_.arms)
            arms.push_back({{"name", a.name},
                            {"kernel_spec", a.guest.kernel},
                            {"device", device_name(a.device)},
                            {"memmap_on_memory_requested", a.memmap_on_memory},
                            {"online_requested", lab::online_mode_name(a.guest.online)},
                            {"append", a.guest.append},
                            {"node_mem_bytes", a.guest.node_mem},
                            {"guest", nullptr},
                            {"cycles", json::array()}});
        results_ = {{"schema", kResultsSchema},
                    {"memhp_version", kVersion},
                    {"title", cfg_.title.empty() ? std::string(cfg_.scale ? "scale ramp" : "hot-add A/B") : cfg_.title},
                    {"started", now_iso_utc()},
                    {"status", "running"},
                    {"options",
                     {{"mode", cfg_.scale ? "scale" : "cycles"},
                      {"cycles", cfg_.cycles},
                      {"boots", cfg_.boots},
                      {"dimm_bytes", cfg_.dimm_size},
                      {"dimms", cfg_.dimms},
                      {"node", cfg_.node},
                      {"zone", cfg_.zone},
                      {"order", "interleaved, alternating (ABBA...)"},
                      {"scale_bytes", cfg_.scale ? cfg_.scale_size : 0},
                      {"scale_device", cfg_.scale_device == ScaleDevice::VirtioMem ? "virtio-mem" : "dimm"},
                      {"scale_step_bytes", cfg_.scale ? scale_step_bytes(cfg_) : 0},
                      {"fallback_kernel", cfg_.fallback_kernel},
                      {"fallback_bytes", cfg_.fallback_size},
                      {"peer", cfg_.peer}}},
                    {"arms", arms},
                    {"fallback_check", json::array()},
                    {"errors", json::array()}};
        if (cfg_.scenario != Scenario::None) {
            results_["options"]["scenario"] = scenario_name(cfg_.scenario);
            if (cfg_.scenario == Scenario::Pressure) results_["options"]["margins_bytes"] = cfg_.margins;
        }
        save();
    }

    void fail(Runner& r, const std::string& what) {
        r.error = what;
        failed_ = true;
        results_["errors"].push_back(r.name + ": " + what);
        if (r.record) (*r.record)["error"] = what;
        say("error: " + r.name + ": " + what);
        save();
    }

    // Shuts every guest of the current boot down (the records stay).
    void shutdown_guests() {
        for (auto& r : runners_) {
            r.hog.reset();
            r.peer.reset();
            r.trace.reset();
            r.mem.reset();
            if (r.guest) r.guest->shutdown();
            r.guest.reset();
        }
        runners_.clear();
    }

    // Boots guest number `boot` of every arm (and, with `last`, the extra
    // guest of the fallback check, which runs after the last boot's rounds).
    void boot_all(int boot, bool last) {
        if (cfg_.boots > 1) say("boot " + std::to_string(boot) + "/" + std::to_string(cfg_.boots) + " of every arm");
        for (std::size_t i = 0; i < cfg_.arms.size(); ++i) {
            Runner r;
            r.name = cfg_.arms[i].name;
            r.config = cfg_.arms[i].guest;
            r.mmo_asked = cfg_.arms[i].memmap_on_memory;
            r.probes = cfg_.arms[i].probes;
            r.device = make_device(cfg_.arms[i].device, cfg_.arms[i].guest.memmap_on_memory);
            r.device->configure(r.config, cfg_.dimm_size * static_cast<std::uint64_t>(cfg_.dimms), cfg_.node);
            runners_.push_back(std::move(r));
        }
        const bool ref_needed = last &&
            !cfg_.scale && !cfg_.fallback_kernel.empty() && cfg_.fallback_size > 0 &&
            std::none_of(cfg_.arms.begin(), cfg_.arms.end(), [&](const ArmSpec& a) {
                return a.guest.kernel == cfg_.fallback_kernel && a.memmap_on_memory == "on";
            });
        if (ref_needed) {
            Runner r;
            r.name = "fallback-" + cfg_.fallback_kernel;
            r.config = cfg_.arms.front().guest;
            r.config.kernel = cfg_.fallback_kernel;
            r.config.memmap_on_memory = true;
            r.mmo_asked = "on";
            r.is_arm = false;
            r.config.virtio_mem.clear();
            r.device = make_device(DeviceKind::Dimm);
            runners_.push_back(std::move(r));
        }
        for (std::size_t i = 0; i < cfg_.arms.size(); ++i) runners_[i].record = &results_["arms"][i];
        if (cfg_.scale && cfg_.scale_device == ScaleDevice::VirtioMem)
            for (std::size_t i = 0; i < cfg_.arms.size(); ++i) {
                auto& r = runners_[i];
                const auto& p = plans_.at(i);
                if (r.config.node_mem.empty()) r.config.node_mem.push_back(0);
                r.config.node_mem.front() = std::max(r.config.node_mem.front(), p.boot_bytes);
                r.config.virtio_mem = {lab::VirtioMemConfig{cfg_.node, cfg_.scale_size, 0}};
                std::uint64_t boot = 0;
                for (auto b : r.config.node_mem) boot += b;
                r.config.maxmem = std::max(r.config.maxmem, boot + cfg_.scale_size + (std::uint64_t{1} << 30));
                if (r.record) (*r.record)["scale_plan"] = {{"boot_bytes", p.boot_bytes}, {"memmap_bytes", p.memmap_bytes},
                                                           {"maxmem_bytes", r.config.maxmem}, {"host_bytes", p.host_bytes},
                                                           {"arithmetic", p.arithmetic}};
            }
        else if (cfg_.scale)
            for (auto& r : runners_) {
                const auto steps = cfg_.scale_size / cfg_.dimm_size;
                r.config.slots = std::max<unsigned>(r.config.slots, static_cast<unsigned>(steps + 2));
                std::uint64_t boot = 0;
                for (auto b : r.config.node_mem) boot += b;
                r.config.maxmem = std::max(r.config.maxmem, boot + cfg_.scale_size + (std::uint64_t{1} << 30));
            }
        // Start every QEMU from this thread (they die with it), then wait.
        for (auto& r : runners_) {
            say("starting guest '" + r.name + "': kernel " + r.config.kernel + ", device " + device_name(r.device->kind()) +
                ", memmap_on_memory=" + r.mmo_asked);
            try {
                r.guest = lab::Guest::start(r.config, [this, name = r.name](const std::string& s) { say("[" + name + "] " + s); });
            } catch (const Interrupted&) {
                throw;
            } catch (const UsageError& e) {
                // An arm that cannot be run as asked (mmo=on on 5.10): the whole run is refused.
                throw UsageError("arm '" + r.name + "': " + e.what());
            } catch (const std::exception& e) {
                fail(r, std::string("could not start the guest: ") + e.what());
                return;
            }
        }
        for (auto& r : runners_) {
            try {
                r.guest->wait_ready();
                r.mem = std::make_unique<lab::MemoryLab>(*r.guest);
                const auto param = r.mem->memmap_on_memory_param();
                if (r.probes) {
                    say("[" + r.name + "] attaching memhp's probes in the guest");
                    r.trace = std::make_unique<lab::GuestTrace>(*r.guest);
                    say("[" + r.name + "] " + r.trace->attach_line() + " (" + ms(r.trace->attach_seconds()) + " from spawn)");
                } else {
                    say("[" + r.name + "] probes=off: no memhp trace in this guest (wall times only)");
                }
                if (r.record) {
                    const auto& k = r.guest->kernel();
                    json g = {{"package", k.package},
                                            {"version", k.version},
                                            {"release", r.guest->release()},
                                            {"memmap_on_memory", param},
                                            {"auto_online_blocks", r.guest->online_policy()},
                                            {"block_size_bytes", r.mem->block_size()},
                                            {"boot_s", r.guest->boot_seconds()},
                                            {"qemu_pid", r.guest->qemu_pid()},
                                            {"attach_s", r.trace ? r.trace->attach_seconds() : 0.0},
                                            {"probes", r.trace ? r.trace->attach_line().substr(std::string("memhp: ").size())
                                                               : std::string("off (probes=off)")},
                                            {"qemu_cmdline", trim(read_file(r.guest->run_dir() / "qemu.cmdline"))}};
                    // "guest" describes the first boot (as before --boots);
                    // "boots" lists every boot's guest, cycles name theirs.
                    if (boot == 1) (*r.record)["guest"] = g;
                    g["boot"] = boot;
                    (*r.record)["boots"].push_back(g);
                }
                if (!cfg_.peer.empty() && r.is_arm && !attach_peer(r)) return;
                if (r.mem->block_size() != kBlock) {
                    fail(r, "the guest's memory block is " + format_size_exact(r.mem->block_size()) + ", not 128M");
                    return;
                }
            } catch (const Interrupted&) {
                throw;
            } catch (const std::exception& e) {
                fail(r, std::string("the guest did not get ready: ") + e.what());
                return;
            }
        }
        save();
    }

    // --peer: bpftrace beside memhp trace in this guest. False (the run
    // failed, with bpftrace's output in the error) when it did not attach.
    bool attach_peer(Runner& r) {
        say("[" + r.name + "] attaching bpftrace's probes for the peer check");
        const auto bpftrace = find_program("bpftrace");
        try {
            r.peer = std::make_unique<lab::GuestTrace>(
                *r.guest, bpftrace_peer_command(bpftrace ? bpftrace->string() : "bpftrace"),
                std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.peer_attach_timeout),
                [&](const std::string& s) { say("[" + r.name + "] " + s); });
        } catch (const Interrupted&) {
            throw;
        } catch (const lab::GuestError&) {
            throw;  // the guest itself is gone: reported as such by the caller
        } catch (const std::exception& e) {
            fail(r, std::string("--peer bpftrace: ") + e.what() +
                        "\n(run without --peer, or raise --peer-timeout if bpftrace was still attaching)");
            return false;
        }
        say("[" + r.name + "] bpftrace attached (" + ms(r.peer->attach_seconds()) + " from spawn; memhp took " +
            ms(r.trace->attach_seconds()) + ")");
        if (r.record) (*r.record)["guest"]["peer"] = {{"tool", "bpftrace"}, {"attach_s", r.peer->attach_seconds()}};
        return true;
    }

    // Tracer `t`'s records of the cycle that just ran: waits until every
    // expected remove (or add) arrived, `want` of each.
    static std::vector<json> take_ops(lab::GuestTrace& t, const lab::CycleRecord& c, std::size_t want) {
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
    static double reference_seconds(Runner& r) {
        const auto t = Clock::now();
        const auto res = r.guest->agent().sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done", std::chrono::seconds(60));
        if (!res.ok()) throw Error("the reference workload failed in the guest: " + res.err);
        return std::chrono::duration<double>(Clock::now() - t).count();
    }

    void rounds(int boot, int first, int last) {
        const lab::CycleOptions base_opts{cfg_.dimm_size, cfg_.node, lab::parse_zone(cfg_.zone),
                                          std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.timeout),
                                          cfg_.dimms};
        const std::size_t n = cfg_.arms.size();
        for (int round = first; round <= last && !failed_; ++round) {
            std::string line = "round " + std::to_string(round) + "/" + std::to_string(cfg_.cycles) +
                               (cfg_.boots > 1 ? " (boot " + std::to_string(boot) + ")" : std::string()) + ":";
            for (std::size_t k = 0; k < n && !failed_; ++k) {
                // ABBA...: the arm that goes first alternates, so slow drift
                // of the machine lands on both arms alike.
                auto& r = runners_[round % 2 ? k : n - 1 - k];
                std::optional<double> reference;
                if (cfg_.reference) {
                    try {
                        reference = reference_seconds(r);
                    } catch (const Interrupted&) {
                        throw;
                    } catch (const std::exception&) {
                        // A guest that died shows in the cycle itself (guest_lost,
                        // with QEMU's own words); the cycle just lacks its reference.
                    }
                }
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
                cj["position"] = k;  // 0 = ran first in its round
                if (reference) cj["reference_s"] = *reference;
                cj["metrics"] = cycle_metrics(c, ops, cfg_.node);
                cj["ops"] = ops;
                if (r.peer) cj["peer_ops"] = peer_ops;
                if (r.trace && c.ok() && lab::count_phase(ops, "add") < want) {
                    cj["ok"] = false;
                    cj["error"] = "memhp's probes reported no add for this cycle";
                }
                (*r.record)["cycles"].push_back(cj);
                const auto& m = cj["metrics"];
                line += " " + r.name + (cj["ok"].get<bool>() ? "" : " FAILED");
                if (m.contains("probe_add_s")) line += " add " + ms(m["probe_add_s"]);
                if (m.contains("probe_online_s")) line += " online " + ms(m["probe_online_s"]);
                if (m.contains("free_consumed_bytes"))
                    line += " free-used " + format_size_human(m["free_consumed_bytes"].get<std::uint64_t>());
                line += ";";
                if (c.guest_lost) {
                    std::string why = "guest lost in cycle " + std::to_string(round);
                    for (const auto& p : c.phases)
                        if (!p.ok) why += " (" + p.phase + ": " + p.error + ")";
                    fail(r, why);
                }
            }
            say(line);
            save();
        }
    }

    void scale_ramp() {
        const int steps = static_cast<int>(cfg_.scale_size / cfg_.dimm_size);
        const auto zone = lab::parse_zone(cfg_.zone);
        const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.timeout);
        std::vector<std::vector<lab::Dimm>> dimms(cfg_.arms.size());
        for (auto& r : runners_)
            if (r.record) (*r.record)["scale"] = json::array();
        for (int step = 1; step <= steps && !failed_; ++step) {
            std::string line = "step " + std::to_string(step) + "/" + std::to_string(steps) + ":";
            const std::size_t n = cfg_.arms.size();
            for (std::size_t k = 0; k < n && !failed_; ++k) {
                const std::size_t i = step % 2 ? k : n - 1 - k;
                auto& r = runners_[i];
                json s{{"step", step}, {"present_before_bytes", static_cast<std::uint64_t>(step - 1) * cfg_.dimm_size}};
                try {
                    auto t = Clock::now();
                    auto d = r.mem->add_dimm(cfg_.dimm_size, cfg_.node, timeout);
                    dimms[i].push_back(d);
                    // As in cycle_metrics: under auto-online one wall time
                    // until the blocks are online.
                    if (r.guest->kernel_onlines()) {
                        r.mem->wait_online(d, timeout);
                        s["wall_add_s"] = std::chrono::duration<double>(Clock::now() - t).count();
                    } else {
                        s["wall_add_s"] = std::chrono::duration<double>(Clock::now() - t).count();
                        t = Clock::now();
                        r.mem->online(d, zone);
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
                    line += " " + r.name + " add " + ms(s.value("probe_add_s", s.value("wall_add_s", 0.0)));
                    if (s.contains("probe_online_s") || s.contains("wall_online_s"))
                        line += " online " + ms(s.value("probe_online_s", s.value("wall_online_s", 0.0)));
                    line += ";";
                } catch (const Interrupted&) {
                    throw;
                } catch (const std::exception& e) {
                    s["ok"] = false;
                    s["error"] = e.what();
                    (*r.record)["scale"].push_back(s);
                    fail(r, "scale step " + std::to_string(step) + " failed: " + e.what());
                    break;
                }
                (*r.record)["scale"].push_back(s);
            }
            say(line);
            save();
        }
        for (auto& r : runners_)
            if (r.record) (*r.record)["scale_analysis"] = scale_analysis(*r.record, cfg_.dimm_size);
        // Take it all out again, newest first; the totals go in the record.
        for (std::size_t i = 0; i < cfg_.arms.size(); ++i) {
            auto& r = runners_[i];
            if (!r.error.empty() || dimms[i].empty()) continue;
            say("[" + r.name + "] offlining and removing " + std::to_string(dimms[i].size()) + " DIMMs");
            const auto t = Clock::now();
            try {
                for (auto it = dimms[i].rbegin(); it != dimms[i].rend(); ++it) {
                    r.mem->offline(*it);
                    r.mem->remove(*it, std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.timeout));
                }
                (*r.record)["scale_teardown_s"] = std::chrono::duration<double>(Clock::now() - t).count();
            } catch (const Interrupted&) {
                throw;
            } catch (const std::exception& e) {
                fail(r, std::string("tearing the scale ramp down failed: ") + e.what());
            }
        }
    }

    // A multi-block add with memmap_on_memory=1: 6.1 silently falls back to
    // the page allocator, later kernels use the altmap for every block.
    void fallback_checks() {
        if (cfg_.fallback_size == 0) return;
        for (auto& r : runners_) {
            if (!r.error.empty() || !r.guest || !r.trace || r.device->kind() != DeviceKind::Dimm) continue;
            std::string param;
            try {
                param = r.mem->memmap_on_memory_param();
            } catch (const std::exception&) {
                continue;
            }
            if (param != "Y" && param != "force") continue;
            say("[" + r.name + "] fallback check: one " + format_size_human(cfg_.fallback_size) + " DIMM with memmap_on_memory=" + param);
            json f{{"guest", r.name}, {"release", r.guest->release()}, {"dimm_bytes", cfg_.fallback_size}};
            try {
                auto d = r.mem->add_dimm(cfg_.fallback_size, cfg_.node, std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.timeout));
                auto ops = r.trace->take([&](const std::vector<json>& o) { return lab::count_phase(o, "add") >= 1; });
                r.mem->remove(d, std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.timeout));
                (void)r.trace->take([&](const std::vector<json>& o) { return lab::count_phase(o, "remove") >= 1; });
                std::uint64_t alt = 0, buddy = 0;
                bool unused = false;
                std::string reason;
                for (const auto& o : ops)
                    if (o.value("phase", "") == "add") {
                        alt += o["memmap"].value("altmap_pages", std::uint64_t{0});
                        buddy += o["memmap"].value("buddy_pages", std::uint64_t{0});
                        unused = unused || o.value("memmap_on_memory_unused", false);
                        if (o.contains("unused_reason")) reason = o["unused_reason"];
                    }
                f["altmap_bytes"] = alt * kPage;
                f["page_allocator_bytes"] = buddy * kPage;
                f["unused"] = unused;
                if (!reason.empty()) f["reason"] = reason;
                f["ops"] = ops;
                say("[" + r.name + "]   altmap " + format_size_human(alt * kPage) + ", page allocator " +
                    format_size_human(buddy * kPage) + (unused ? ", flagged: " + reason : ""));
            } catch (const Interrupted&) {
                throw;
            } catch (const std::exception& e) {
                f["error"] = e.what();
                say("[" + r.name + "]   fallback check failed: " + e.what());
            }
            results_["fallback_check"].push_back(f);
        }
        save();
    }

    // What memhp trace lost in this boot (its summary record), summed over
    // the boots into the arm's guest record; the gate and compare refuse a
    // clean verdict on an arm with any (docs/ab-json.md).
    static void record_trace_losses(nlohmann::json& g, const std::optional<lab::TraceSummary>& s) {
        if (!g.is_object()) return;
        if (!s) {
            g["trace_summary_missing"] = true;
            return;
        }
        const auto add = [&](const char* key, std::uint64_t n) { g[key] = g.value(key, std::uint64_t{0}) + n; };
        add("trace_dropped_events", s->dropped_events);
        add("trace_decode_errors", s->decode_errors);
        add("trace_orphan_page_events", s->orphan_page_events);
        add("trace_stale_ops", s->stale_ops);
        add("trace_untraced_ops", s->untraced_ops);
    }

    void stop_tracers() {
        for (auto& r : runners_) {
            if (r.peer && r.error.empty()) {
                try {
                    (void)r.peer->stop();
                } catch (const Interrupted&) {
                    throw;
                } catch (const std::exception& e) {
                    results_["errors"].push_back(r.name + ": " + e.what());
                }
            }
            r.peer.reset();
            if (!r.trace || !r.error.empty()) continue;
            try {
                const auto text = r.trace->stop();
                if (r.record) record_trace_losses((*r.record)["guest"], lab::parse_trace_summary(text));
            } catch (const Interrupted&) {
                throw;
            } catch (const std::exception& e) {
                results_["errors"].push_back(r.name + ": " + e.what());
            }
            r.trace.reset();
        }
    }

    void finish() {
        results_["finished"] = now_iso_utc();
        results_["wall_s"] = std::chrono::duration<double>(Clock::now() - t0_).count();
        if (cfg_.scenario != Scenario::None) results_["scenario"] = scenario_summary(results_);
        for (auto& r : runners_)
            if (r.record && (*r.record)["guest"].is_object() && (*r.record)["guest"].contains("peer"))
                (*r.record)["guest"]["peer"]["phases"] = peer_agreement(*r.record);
        shutdown_guests();
        save();
        if (cfg_.plots) {
            try {
                results_["plots"] = write_plots(results_, cfg_.out / "plots");
            } catch (const std::exception& e) {
                plot_failed_ = true;
                results_["errors"].push_back(std::string("plots: ") + e.what());
            }
        }
        std::string summary;
        try {
            summary = summary_markdown(results_, cfg_.compare);
        } catch (const BadResults& e) {  // a bug of ours: keep the results, say so
            results_["errors"].push_back(std::string("summary: ") + e.what());
            summary = std::string("## memhp ab\n\nThe summary could not be rendered: ") + e.what() + "\n";
        }
        write_file_atomic(cfg_.out / "summary.md", summary);
        save();
    }

    // ---- memhp ab --scenario (scenario.hpp) ----------------------------------

    // (Re)starts r's memhp-hog; false (recorded in `step`) when it could not
    // get ready, e.g. killed on the way to a margin below the watermarks.
    bool start_hog(Runner& r, std::uint64_t margin, json& step) {
        r.hog.reset();
        say("[" + r.name + "] memhp-hog " + scenario_name(cfg_.scenario) +
            (cfg_.scenario == Scenario::Pressure ? " --margin " + format_size_human(margin) : std::string()));
        try {
            r.hog = std::make_unique<GuestHog>(*r.guest, cfg_.scenario, margin, cfg_.hog_node,
                                               std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.hog_timeout));
            const auto& h = r.hog->ready();
            step["hog"] = h;
            say("[" + r.name + "]   ready in " + ms(h.value("setup_s", 0.0)) + ": node " + std::to_string(cfg_.hog_node) +
                " MemFree " + format_size_human(h.value("mem_free_bytes", std::uint64_t{0})) + ", free blocks of order >= 9: " +
                std::to_string(h.value("high_order_free_blocks", 0)) +
                (h.value("released_bytes", std::uint64_t{0}) > 0
                     ? " (gave back " + format_size_human(h["released_bytes"].get<std::uint64_t>()) + " it overshot)"
                     : std::string()));
            return true;
        } catch (const Interrupted&) {
            throw;
        } catch (const std::exception& e) {
            r.hog.reset();
            step["hog_error"] = e.what();
            say("[" + r.name + "]   memhp-hog failed: " + e.what());
            if (!r.guest->alive()) fail(r, std::string("guest lost setting up memhp-hog: ") + e.what());
            return false;
        }
    }

    void scenario_steps() {
        const lab::CycleOptions base_opts{cfg_.dimm_size, cfg_.node, lab::parse_zone(cfg_.zone),
                                          std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.timeout),
                                          cfg_.dimms};
        const std::vector<std::uint64_t> margins =
            cfg_.scenario == Scenario::Pressure ? cfg_.margins : std::vector<std::uint64_t>{0};
        const std::size_t n = cfg_.arms.size();
        int round = 0;
        for (std::size_t si = 0; si < margins.size() && !failed_; ++si) {
            const auto margin = margins[si];
            const std::string label = cfg_.scenario == Scenario::Pressure ? "margin " + format_size_human(margin) : "fragmented";
            std::vector<bool> unreachable(n, false);  // the hog never got ready at this margin
            for (std::size_t i = 0; i < n && !failed_; ++i) {
                auto& r = runners_[i];
                json step{{"step", si + 1}};
                if (cfg_.scenario == Scenario::Pressure) step["margin_bytes"] = margin;
                unreachable[i] = !start_hog(r, margin, step);
                (*r.record)["scenario_steps"].push_back(step);
            }
            save();
            for (int k = 1; k <= cfg_.cycles && !failed_; ++k) {
                ++round;
                std::string line = label + ", round " + std::to_string(k) + "/" + std::to_string(cfg_.cycles) + ":";
                for (std::size_t pos = 0; pos < n && !failed_; ++pos) {
                    const std::size_t i = round % 2 ? pos : n - 1 - pos;
                    auto& r = runners_[i];
                    if (!r.error.empty()) continue;
                    if (unreachable[i]) {
                        line += " " + r.name + " skipped (memhp-hog could not hold the margin);";
                        continue;
                    }
                    json extra = json::object();
                    if (!r.hog || !r.hog->alive()) {  // the OOM killer took it: set it up again
                        if (r.hog && r.hog->exit_code()) extra["hog_exit_code"] = *r.hog->exit_code();
                        json step{{"step", si + 1}, {"restart", true}};
                        if (cfg_.scenario == Scenario::Pressure) step["margin_bytes"] = margin;
                        const bool ok = start_hog(r, margin, step);
                        (*r.record)["scenario_steps"].push_back(step);
                        if (!ok) {
                            line += " " + r.name + " skipped (no memhp-hog);";
                            continue;
                        }
                        extra["hog_restarted"] = true;
                    }
                    lab::CycleOptions copts = base_opts;
                    copts.kernel_onlines = r.guest->kernel_onlines();
                    auto sc = run_scenario_cycle(*r.guest, *r.mem, *r.trace, copts, round);
                    json cj = lab::to_json(sc.cycle);
                    cj["round"] = round;
                    cj["position"] = pos;
                    cj["metrics"] = cycle_metrics(sc.cycle, sc.ops, cfg_.node);
                    cj["ops"] = sc.ops;
                    sc.scenario["step"] = si + 1;
                    if (cfg_.scenario == Scenario::Pressure) sc.scenario["margin_bytes"] = margin;
                    sc.scenario["hog_pid"] = r.hog ? r.hog->pid() : -1;
                    sc.scenario.update(extra);
                    cj["scenario"] = sc.scenario;
                    (*r.record)["cycles"].push_back(cj);
                    int ok = 0, base = 0, oom = 0;
                    std::uint64_t used = 0;
                    for (const auto& a : sc.scenario["adds"]) {
                        ok += a.value("ok", false);
                        base += a.value("base_pages", false);
                        oom += a.value("oom_kills", 0) > 0;
                        used += a.value("free_consumed_bytes", std::uint64_t{0});
                    }
                    const auto adds = sc.scenario["adds"].size();
                    line += " " + r.name + " " + std::to_string(ok) + "/" + std::to_string(adds) + " added";
                    if (adds > static_cast<std::size_t>(ok)) line += ", " + std::to_string(adds - ok) + " failed";
                    if (base) line += ", " + std::to_string(base) + " base-page memmap";
                    if (oom) line += ", " + std::to_string(oom) + " OOM kill";
                    line += ", free used " + format_size_human(used) + ";";
                    if (sc.cycle.guest_lost) fail(r, "guest lost in scenario cycle " + std::to_string(round) + ": " + sc.cycle.cleanup);
                }
                say(line);
                save();
            }
            for (auto& r : runners_) {
                if (!r.hog) continue;
                try {
                    r.hog->stop();
                } catch (const Interrupted&) {
                    throw;
                } catch (const std::exception& e) {
                    results_["errors"].push_back(r.name + ": stopping memhp-hog: " + e.what());
                }
                r.hog.reset();
            }
        }
    }

    // ---- end of --scenario ----------------------------------------------------

    // ---- memhp ab --scale --device virtio-mem ----------------------------------

    // Before anything boots: every arm's boot memory, and a refusal (with the
    // arithmetic) when the host cannot hold all the guests at once.
    void plan_virtio_scale() {
        std::uint64_t avail = 0;
        if (const auto text = try_read_file("/proc/meminfo")) {
            const auto mi = parse_meminfo(*text);
            if (const auto it = mi.find("MemAvailable"); it != mi.end()) avail = it->second * 1024;
        }
        plans_.clear();
        for (const auto& a : cfg_.arms) {
            try {
                plans_.push_back(virtio_scale_plan(cfg_, a, avail));
            } catch (const UsageError& e) {
                throw UsageError("arm '" + a.name + "': " + e.what());
            }
            say("[" + a.name + "] scale plan: " + plans_.back().arithmetic);
        }
    }

    // Grows each arm's virtio-mem device by one step at a time, onlining the
    // step before the next (the kernel does under auto-online, else the lab
    // writes each new block's state). Per step: the host's end-to-end time
    // from the QMP request to the last block online, the probes' add and
    // online times and their sub-phases.
    void virtio_scale_ramp() {
        const auto step_bytes = scale_step_bytes(cfg_);
        const auto steps = cfg_.scale_size / step_bytes;
        const auto zone = lab::parse_zone(cfg_.zone);
        const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.timeout);
        const std::size_t n = cfg_.arms.size();
        for (auto& r : runners_)
            if (r.record) (*r.record)["scale"] = json::array();
        const auto t_ramp = Clock::now();
        for (std::uint64_t step = 1; step <= steps && !failed_; ++step) {
            std::string line = "step " + std::to_string(step) + "/" + std::to_string(steps) + ":";
            for (std::size_t k = 0; k < n && !failed_; ++k) {
                const std::size_t i = step % 2 ? k : n - 1 - k;
                auto& r = runners_[i];
                json s{{"step", step}, {"present_before_bytes", (step - 1) * step_bytes}, {"step_bytes", step_bytes}};
                try {
                    const auto t = Clock::now();
                    const auto res = r.mem->resize_virtio_mem(0, step * step_bytes, timeout);
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
                        r.mem->online(d, zone);
                        s["wall_online_s"] = std::chrono::duration<double>(Clock::now() - t_on).count();
                    }
                    const double e2e = std::chrono::duration<double>(Clock::now() - t).count();
                    s["e2e_s"] = e2e;
                    s["e2e_gib_s"] = e2e > 0 ? static_cast<double>(step_bytes) / e2e / static_cast<double>(1ull << 30) : 0.0;
                    if (r.trace) {
                        // Under auto-online a nested online's record comes before its add's: wait for both.
                        const auto ops = r.trace->take([&](const std::vector<json>& o) {
                            return lab::count_phase(o, "online") >= d.blocks.size() &&
                                   lab::count_phase(o, "add") >= d.blocks.size();
                        });
                        record_probe_step(s, ops);
                    }
                    s["ok"] = true;
                    line += " " + r.name + " " + ms(e2e);
                    if (s.contains("probe_online_s"))
                        line += " (kernel: add " + ms(s["probe_add_s"]) + ", online " + ms(s["probe_online_s"]) + ")";
                    line += ";";
                } catch (const Interrupted&) {
                    throw;
                } catch (const std::exception& e) {
                    s["ok"] = false;
                    s["error"] = e.what();
                    (*r.record)["scale"].push_back(s);
                    fail(r, "scale step " + std::to_string(step) + " failed: " + e.what());
                    break;
                }
                (*r.record)["scale"].push_back(s);
            }
            // Every step in the log would be thousands of lines at 256 GiB: every 16th, and the last.
            if (step % 16 == 0 || step == steps || steps <= 64) say(line);
            if (step % 16 == 0 || step == steps) save();
        }
        for (auto& r : runners_) {
            if (!r.record) continue;
            (*r.record)["scale_analysis"] = scale_analysis(*r.record, step_bytes);
            (*r.record)["scale_total"] = scale_totals((*r.record)["scale"], step_bytes);
        }
        say("scale ramp done in " + ms(std::chrono::duration<double>(Clock::now() - t_ramp).count()));
        save();
    }

    const AbConfig& cfg_;
    Progress progress_;
    json& results_;
    std::vector<Runner> runners_;
    bool failed_ = false;
    bool plot_failed_ = false;
    Clock::time_point t0_;
    std::vector<ScalePlan> plans_;  // virtio-mem scale: one per arm
};

}  // namespace

int run_ab(const AbConfig& cfg, const Progress& progress, json& results) {
    validate(cfg);
    AbRun run(cfg, progress, results);
    return run.run();
}

}  // namespace memhp::ab
