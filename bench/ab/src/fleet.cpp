// SPDX-License-Identifier: Apache-2.0
#include "fleet.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "memhp/ab/peer.hpp"
#include "memhp/error.hpp"
#include "memhp/process.hpp"
#include "memhp/size.hpp"
#include "results_doc.hpp"

namespace memhp::ab::detail {

using nlohmann::json;

std::string ms(double s) {
    char b[32];
    std::snprintf(b, sizeof b, "%.0f ms", s * 1e3);
    return b;
}

namespace {

// What memhp trace lost in this boot (its summary record), summed over
// the boots into the arm's guest record; the gate and compare refuse a
// clean verdict on an arm with any (docs/ab-json.md).
void record_trace_losses(json& g, const std::optional<lab::TraceSummary>& s) {
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

}  // namespace

void Fleet::say(const std::string& s) const {
    if (progress_) progress_(s);
}

void Fleet::fail(Runner& r, const std::string& what) {
    r.error = what;
    failed_ = true;
    doc_.root()["errors"].push_back(r.name + ": " + what);
    if (r.record) (*r.record)["error"] = what;
    say("error: " + r.name + ": " + what);
    doc_.save();
}

void Fleet::shutdown_guests() {
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

void Fleet::boot_all(int boot, bool last) {
    if (cfg_.boots > 1) say("boot " + std::to_string(boot) + "/" + std::to_string(cfg_.boots) + " of every arm");
    add_runners(last);
    size_for_scale();
    if (!start_guests()) return;
    for (auto& r : runners_)
        if (!get_ready(r, boot)) return;
    doc_.save();
}

// One runner per arm, then the fallback check's extra guest when the last
// boot needs one (no arm runs its kernel with memmap_on_memory=on).
void Fleet::add_runners(bool last) {
    for (const auto& arm : cfg_.arms) {
        Runner r;
        r.name = arm.name;
        r.config = arm.guest;
        r.mmo_asked = arm.memmap_on_memory;
        r.probes = arm.probes;
        r.device = make_device(arm.device, arm.guest.memmap_on_memory);
        r.device->configure(r.config, cfg_.dimm_size * static_cast<std::uint64_t>(cfg_.dimms), cfg_.node);
        runners_.push_back(std::move(r));
    }
    const bool ref_needed = last && !cfg_.scale && !cfg_.fallback_kernel.empty() && cfg_.fallback_size > 0 &&
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
    for (std::size_t i = 0; i < cfg_.arms.size(); ++i) runners_[i].record = &doc_.root()["arms"][i];
}

// A scale run's guests need room for the whole ramp: the virtio-mem plan's
// boot memory and device, or enough DIMM slots.
void Fleet::size_for_scale() {
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
            if (r.record)
                (*r.record)["scale_plan"] = {{"boot_bytes", p.boot_bytes},
                                             {"memmap_bytes", p.memmap_bytes},
                                             {"maxmem_bytes", r.config.maxmem},
                                             {"host_bytes", p.host_bytes},
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
}

// Starts every QEMU from this thread (they die with it); the caller waits.
bool Fleet::start_guests() {
    for (auto& r : runners_) {
        say("starting guest '" + r.name + "': kernel " + r.config.kernel + ", device " + device_name(r.device->kind()) +
            ", memmap_on_memory=" + r.mmo_asked);
        try {
            const lab::Machine::Progress said = [this, name = r.name](const std::string& s) {
                say("[" + name + "] " + s);
            };
            if (cfg_.start_guest)
                r.guest = cfg_.start_guest(r.config, said);
            else
                r.guest = lab::Guest::start(r.config, said);
        } catch (const Interrupted&) {
            throw;
        } catch (const UsageError& e) {
            // An arm that cannot be run as asked (mmo=on on 5.10): the whole run is refused.
            throw UsageError("arm '" + r.name + "': " + e.what());
        } catch (const std::exception& e) {
            fail(r, std::string("could not start the guest: ") + e.what());
            return false;
        }
    }
    return true;
}

// Waits for r's guest, attaches its tracers and records it; false (the run
// failed) when it did not get ready.
bool Fleet::get_ready(Runner& r, int boot) {
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
        if (r.record) record_guest(r, boot, param);
        if (!cfg_.peer.empty() && r.is_arm && !attach_peer(r)) return false;
        if (r.mem->block_size() != kBlock) {
            fail(r, "the guest's memory block is " + format_size_exact(r.mem->block_size()) + ", not 128M");
            return false;
        }
    } catch (const Interrupted&) {
        throw;
    } catch (const std::exception& e) {
        fail(r, std::string("the guest did not get ready: ") + e.what());
        return false;
    }
    return true;
}

void Fleet::record_guest(Runner& r, int boot, const std::string& param) {
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
              {"qemu_cmdline", r.guest->qemu_cmdline()}};
    // "guest" describes the first boot (as before --boots);
    // "boots" lists every boot's guest, cycles name theirs.
    if (boot == 1) (*r.record)["guest"] = g;
    g["boot"] = boot;
    (*r.record)["boots"].push_back(g);
}

// --peer: bpftrace beside memhp trace in this guest. False (the run
// failed, with bpftrace's output in the error) when it did not attach.
bool Fleet::attach_peer(Runner& r) {
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

void Fleet::stop_tracers() {
    for (auto& r : runners_) {
        if (r.peer && r.error.empty()) {
            try {
                (void)r.peer->stop();
            } catch (const Interrupted&) {
                throw;
            } catch (const std::exception& e) {
                doc_.root()["errors"].push_back(r.name + ": " + e.what());
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
            doc_.root()["errors"].push_back(r.name + ": " + e.what());
        }
        r.trace.reset();
    }
}

bool Fleet::start_hog(Runner& r, std::uint64_t margin, json& step) {
    r.hog.reset();
    say("[" + r.name + "] memhp-hog " + scenario_name(cfg_.scenario) +
        (cfg_.scenario == Scenario::Pressure ? " --margin " + format_size_human(margin) : std::string()));
    try {
        r.hog = std::make_unique<GuestHog>(*r.guest, cfg_.scenario, margin, cfg_.hog_node,
                                           std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.hog_timeout));
        const auto& h = r.hog->ready();
        step["hog"] = h;
        say("[" + r.name + "]   ready in " + ms(h.value("setup_s", 0.0)) + ": node " + std::to_string(cfg_.hog_node) +
            " MemFree " + format_size_human(h.value("mem_free_bytes", std::uint64_t{0})) +
            ", free blocks of order >= 9: " + std::to_string(h.value("high_order_free_blocks", 0)) +
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

}  // namespace memhp::ab::detail
