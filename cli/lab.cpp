// SPDX-License-Identifier: Apache-2.0
// memhp lab: boot a guest and run add -> online -> offline -> remove cycles,
// printing what each phase did to the guest's memory.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "commands.hpp"
#include "guest_options.hpp"
#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/lab/cycle.hpp"
#include "memhp/lab/dax.hpp"
#include "memhp/size.hpp"
#include "memhp/stop.hpp"

namespace memhp::cli {
namespace {

struct LabOptions {
    GuestOptions guest;
    std::string dimm = "128M";
    int node = 1;
    int cycles = 3;
    std::string zone = "movable";
    std::string json_path;
    bool keep = false;
    int timeout_s = 120;
    std::string virtio_mem;           // non-empty: plug/unplug this much through a virtio-mem device instead of DIMMs
    std::string dax;                  // non-empty: a devdax device of this size, given to kmem and back each cycle
    std::string dax_mmo = "default";  // the dax device's memmap_on_memory attribute: on, off, default (left alone)
};

constexpr std::uint64_t kX86BlockSize = std::uint64_t{128} << 20;

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void print_header(int node) {
    std::printf("  %-8s %9s %13s %15s %15s %13s %11s\n", "phase", "wall", "blocks on/all",
                ("node" + std::to_string(node) + " MemTotal").c_str(),
                ("node" + std::to_string(node) + " MemFree").c_str(), "MemFree", "ΔMemFree");
}

void print_row(const std::string& name, double wall_s, const lab::MemorySnapshot& s, const lab::MemorySnapshot& before,
               int node) {
    char wall[32];
    if (wall_s < 0)
        std::snprintf(wall, sizeof wall, "-");
    else
        std::snprintf(wall, sizeof wall, "%.3f s", wall_s);
    const auto n = s.node(node);
    const long long delta = static_cast<long long>(s.mem_free_kb) - static_cast<long long>(before.mem_free_kb);
    std::printf("  %-8s %9s %6zu/%-6zu %12" PRIu64 " kB %12" PRIu64 " kB %10" PRIu64 " kB %+8lld kB\n", name.c_str(),
                wall, s.blocks_online, s.blocks, n.total_kb, n.free_kb, s.mem_free_kb, delta);
}

// Runs `cycles` cycles of `body`, which prints its rows, fills the cycle's
// record and throws when the cycle fails; each record goes into
// results["cycles"], saved after every cycle. After a failed cycle the next
// runs only if `go_on()` says so. Exit status 1 when any cycle failed.
int run_recorded_cycles(int cycles, nlohmann::json& results, const std::function<void()>& save,
                        const std::function<void(int, nlohmann::json&)>& body, const std::function<bool()>& go_on) {
    int failures = 0;
    for (int i = 1; i <= cycles; ++i) {
        nlohmann::json rec{{"index", i}};
        bool ok = true;
        try {
            body(i, rec);
        } catch (const Interrupted&) {
            throw;
        } catch (const UsageError&) {
            throw;
        } catch (const std::exception& e) {
            ok = false;
            rec["error"] = e.what();
            std::printf("  FAILED: %s\n", e.what());
        }
        rec["ok"] = ok;
        results["cycles"].push_back(rec);
        save();
        std::fflush(stdout);
        if (!ok) {
            ++failures;
            if (!go_on()) break;
        }
    }
    if (failures) std::fprintf(stderr, "memhp: %d cycle(s) failed\n", failures);
    return failures ? 1 : 0;
}

// Cycles of plug -> online -> unplug through virtio-mem device 0.
int run_virtio_mem_cycles(lab::Guest& guest, lab::MemoryLab& mem, std::uint64_t size, int node, int cycles,
                          std::chrono::seconds timeout, nlohmann::json& results, const std::function<void()>& save) {
    const auto body = [&](int i, nlohmann::json& rec) {
        std::printf("cycle %d/%d: virtio-mem %s on node %d\n", i, cycles, format_size_human(size).c_str(), node);
        print_header(node);
        const auto before = mem.snapshot();
        print_row("before", -1, before, before, node);
        rec["device"] = lab::virtio_mem_id(0);
        rec["phases"] = nlohmann::json::array();
        auto plug = mem.resize_virtio_mem(0, size, timeout);
        auto after = mem.snapshot();
        print_row("plug", plug.wall_s, after, before, node);
        rec["phases"].push_back({{"phase", "plug"}, {"resize", lab::to_json(plug)}, {"after", lab::to_json(after)}});
        if (plug.plugged != size)
            throw Error("the guest plugged " + format_size_exact(plug.plugged) + " of " + format_size_exact(size));
        if (!guest.kernel_onlines()) {
            const auto t0 = std::chrono::steady_clock::now();
            lab::Dimm d;
            d.id = plug.device;
            d.blocks = plug.blocks_added;
            mem.online(d, lab::Zone::Movable);  // movable: the driver can offline it again to unplug
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            after = mem.snapshot();
            print_row("online", wall, after, before, node);
            rec["phases"].push_back({{"phase", "online"}, {"wall_s", wall}, {"after", lab::to_json(after)}});
        }
        auto unplug = mem.resize_virtio_mem(0, 0, timeout);
        after = mem.snapshot();
        print_row("unplug", unplug.wall_s, after, before, node);
        rec["phases"].push_back(
            {{"phase", "unplug"}, {"resize", lab::to_json(unplug)}, {"after", lab::to_json(after)}});
        if (unplug.plugged != 0)
            throw Error("the guest unplugged only down to " + format_size_exact(unplug.plugged) +
                        " (memory it could not offline stays plugged)");
        std::printf("  %zu blocks added, %zu online after the plug, %zu removed\n", plug.blocks_added.size(),
                    plug.blocks_online, unplug.blocks_removed.size());
    };
    return run_recorded_cycles(cycles, results, save, body, [&guest] { return guest.alive(); });
}

// Cycles of kmem add -> online -> offline -> remove of the dax device.
int run_dax_cycles(lab::MemoryLab& mem, lab::DaxLab& dax, std::optional<bool> mmo, lab::Zone zone, int cycles,
                   nlohmann::json& results, const std::function<void()>& save) {
    constexpr int node = 1;
    const auto body = [&](int i, nlohmann::json& rec) {
        std::printf("cycle %d/%d: kmem %s of %s on node %d\n", i, cycles,
                    format_size_human(dax.blocks().size() * mem.block_size()).c_str(), dax.device().c_str(), node);
        print_header(node);
        const auto before = mem.snapshot();
        print_row("before", -1, before, before, node);
        rec["device"] = dax.device();
        const auto a = dax.add(mmo, zone);
        // dax.add() onlines too: one row for both (their times apart below).
        auto after = mem.snapshot();
        print_row("add+on", a.add_s + a.online_s, after, before, node);
        rec["add"] = lab::to_json(a);
        rec["after_add"] = lab::to_json(after);
        const auto r = dax.remove();
        after = mem.snapshot();
        print_row("off+rm", r.offline_s + r.remove_s, after, before, node);
        rec["remove"] = lab::to_json(r);
        rec["after_remove"] = lab::to_json(after);
        std::printf(
            "  %zu blocks, onlined by the %s; per block: add %.1f ms, online %.1f ms, offline %.1f ms, "
            "remove %.1f ms\n",
            a.blocks.size(), a.online_by.c_str(), 1e3 * a.add_s / a.blocks.size(), 1e3 * a.online_s / a.blocks.size(),
            1e3 * r.offline_s / a.blocks.size(), 1e3 * r.remove_s / a.blocks.size());
    };
    // After a failure the device is in an unknown state: the next cycle would
    // not measure the same thing.
    return run_recorded_cycles(cycles, results, save, body, [] { return false; });
}

// What each DIMM cycle plugs, where, and how often.
void add_lab_cycle_options(CLI::App* cmd, LabOptions& o) {
    cmd->add_option("--dimm", o.dimm, "size of the DIMM hot-added each cycle (a multiple of the 128M memory block)")
        ->capture_default_str();
    cmd->add_option("--node", o.node, "NUMA node the DIMM is plugged into")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->add_option("--cycles", o.cycles, "number of add/online/offline/remove cycles (0: boot only)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->add_option("--zone", o.zone, "zone to online into: movable (offline is reliable), normal, auto")
        ->check(CLI::IsMember({"movable", "normal", "auto"}))
        ->capture_default_str();
    cmd->add_option("--timeout", o.timeout_s, "seconds any single wait inside a phase may take")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
}

// virtio-mem or dax/kmem instead of DIMMs.
void add_lab_device_options(CLI::App* cmd, LabOptions& o) {
    cmd->add_option("--virtio-mem", o.virtio_mem,
                    "hot-plug through a virtio-mem device on --node instead of DIMMs: each cycle plugs SIZE (qom-set "
                    "requested-size; a multiple of 128M), onlines it (the kernel under --online auto, else the lab) "
                    "and unplugs it again (the guest driver offlines and removes its blocks)");
    cmd->add_option("--dax", o.dax,
                    "hot-plug through dax/kmem instead of DIMMs: the guest boots with a pmem range of SIZE plus one "
                    "128M block (memmap=SIZE!START, always above 4G) that is all of NUMA node 1 (node 0 gets 2G, "
                    "more for a small SIZE so that the range clears q35's low memory; --node-mem does not apply), "
                    "ndctl makes it a devdax device, and each cycle gives it to kmem as system RAM (onlined "
                    "into --zone), then offlines it and gives it back; SIZE a multiple of 128M. Needs ndctl on the "
                    "host and the kernel's nvdimm/dax modules (all Debian kernels have them)");
    cmd->add_option("--dax-memmap-on-memory", o.dax_mmo,
                    "with --dax: the dax device's memmap_on_memory attribute, written before kmem takes it: on (the "
                    "memmap of each block on the device itself; needs Linux >= 6.8 and turns the guest's "
                    "memory_hotplug.memmap_on_memory on unless --memmap-on-memory says off, which is refused), off, "
                    "or default (left as the kernel has it)")
        ->check(CLI::IsMember({"on", "off", "default"}))
        ->capture_default_str();
}

// Where the results go, and whether the guest stays up.
void add_lab_output_options(CLI::App* cmd, LabOptions& o) {
    cmd->add_option("--json", o.json_path, "also write the results as JSON to this file (rewritten after every cycle)");
    cmd->add_flag("--keep", o.keep,
                  "leave the guest running after the cycles, print how to reach its console, and wait for Ctrl-C");
}

// What one `memhp lab` run boots and plugs, from the flags.
struct LabPlan {
    lab::GuestConfig cfg;
    std::uint64_t dimm = 0;
    lab::Zone zone{};
    std::uint64_t vmem = 0;       // non-zero: virtio-mem cycles of this size
    std::uint64_t dax_bytes = 0;  // non-zero: dax/kmem cycles of a device this size
    std::optional<bool> dax_mmo;  // the dax device's memmap_on_memory attribute; nullopt: left alone
};

// --dax's guest layout and its memmap_on_memory attribute.
void plan_dax(const LabOptions& o, CLI::App* cmd, LabPlan& p) {
    if (!o.virtio_mem.empty()) throw UsageError("--dax and --virtio-mem: choose one device");
    if (cmd->count("--node-mem") > 0)
        throw UsageError(
            "--dax lays out the guest's nodes itself (node 0 2G or more, node 1 the pmem range): drop "
            "--node-mem");
    p.dax_bytes = parse_size(o.dax);
    lab::configure_dax_guest(p.cfg, p.dax_bytes);
    if (p.dax_mmo.value_or(false)) {
        if (p.cfg.memmap_on_memory == false)
            throw UsageError(
                "--dax-memmap-on-memory on needs the guest's memory_hotplug.memmap_on_memory on "
                "(the kernel refuses the attribute otherwise, EOPNOTSUPP): drop "
                "--memmap-on-memory off");
        p.cfg.memmap_on_memory = true;
    }
    lab::validate(p.cfg);
}

// Validates the flags (before any boot) and converts them.
LabPlan plan_lab(const LabOptions& o, CLI::App* cmd) {
    LabPlan p;
    p.cfg = to_guest_config(o.guest);
    p.dimm = parse_size(o.dimm);
    if (p.dimm == 0 || p.dimm % kX86BlockSize)
        throw UsageError("--dimm " + o.dimm + " is not a multiple of the x86 guest's 128M memory block size");
    if (o.node >= static_cast<int>(p.cfg.node_mem.size()))
        throw UsageError("--node " + std::to_string(o.node) + " does not exist: the guest has " +
                         std::to_string(p.cfg.node_mem.size()) + " node(s) (see --node-mem)");
    p.zone = lab::parse_zone(o.zone);
    if (o.dax_mmo != "default") {
        if (o.dax.empty()) throw UsageError("--dax-memmap-on-memory needs --dax SIZE");
        p.dax_mmo = o.dax_mmo == "on";
    }
    if (!o.dax.empty()) plan_dax(o, cmd, p);
    if (!o.virtio_mem.empty()) {
        p.vmem = parse_size(o.virtio_mem);
        p.cfg.virtio_mem.push_back({o.node, p.vmem, 0});
        lab::validate(p.cfg);
    }
    return p;
}

// The results document before any cycle: the guest and the options.
nlohmann::json lab_results_json(const LabOptions& o, const LabPlan& p, lab::Guest& guest, lab::MemoryLab& mem,
                                const std::string& param) {
    return {{"schema", "memhp.lab/1"},
            {"guest",
             {{"kernel_spec", p.cfg.kernel},
              {"package", guest.kernel().package},
              {"version", guest.kernel().version},
              {"release", guest.release()},
              {"memmap_on_memory", param},
              {"block_size_bytes", mem.block_size()},
              {"boot_s", guest.boot_seconds()},
              {"auto_online_blocks", guest.online_policy()},
              {"cmdline", read_file(guest.run_dir() / "qemu.cmdline")}}},
            {"options",
             {{"dimm_bytes", p.dimm},
              {"node", o.node},
              {"zone", o.zone},
              {"cycles", o.cycles},
              {"online", o.guest.online},
              {"virtio_mem_bytes", p.vmem},
              {"dax_bytes", p.dax_bytes},
              {"dax_memmap_on_memory", o.dax_mmo}}},
            {"cycles", nlohmann::json::array()}};
}

// --dax: sets the devdax device up, reports it, then runs the kmem cycles.
int run_lab_dax(const LabOptions& o, const LabPlan& p, lab::Guest& guest, lab::MemoryLab& mem, nlohmann::json& results,
                const std::function<void()>& save) {
    lab::DaxLab dax(guest, std::chrono::seconds(o.timeout_s));
    const bool attr = dax.has_memmap_on_memory_attr();
    std::printf("dax: %s (%s) -> %s, %s at 0x%" PRIx64
                ", target node %d, %zu blocks for kmem; "
                "memmap_on_memory attribute %s\n",
                dax.namespace_name().c_str(), lab::dax_layout(p.dax_bytes).memmap_arg.c_str(), dax.device().c_str(),
                format_size_human(dax.size()).c_str(), dax.start(), dax.target_node(), dax.blocks().size(),
                attr ? "present" : "absent (Linux < 6.8)");
    results["dax"] = {
        {"device", dax.device()},   {"namespace", dax.namespace_name()}, {"start", dax.start()},
        {"size_bytes", dax.size()}, {"target_node", dax.target_node()},  {"memmap_on_memory_attribute", attr}};
    if (p.dax_mmo && !attr)
        throw UsageError("--dax-memmap-on-memory " + o.dax_mmo + ": kernel " + guest.release() +
                         " has no memmap_on_memory attribute on its dax devices (it arrived in Linux 6.8): "
                         "use --dax-memmap-on-memory default, or a kernel that has it (--kernel 6.12, 7.2)");
    if (guest.kernel_onlines())  // kmem's blocks go where auto_online_blocks says: into --zone
        guest.agent().write("/sys/devices/system/memory/auto_online_blocks", lab::zone_state_word(p.zone));
    save();
    return run_dax_cycles(mem, dax, p.dax_mmo, p.zone, o.cycles, results, save);
}

// The DIMM cycles, then the median wall time of each phase over the good
// ones. Returns the number of failed cycles.
int run_dimm_cycles(const LabOptions& o, const LabPlan& p, lab::Guest& guest, lab::MemoryLab& mem,
                    nlohmann::json& results, const std::function<void()>& save) {
    lab::CycleOptions copts{p.dimm, o.node, p.zone, std::chrono::seconds(o.timeout_s)};
    copts.kernel_onlines = guest.kernel_onlines();
    int failures = 0;
    std::map<std::string, std::vector<double>> walls;  // phase -> wall seconds of good cycles
    for (int i = 1; i <= o.cycles; ++i) {
        std::printf("cycle %d/%d: %s DIMM on node %d\n", i, o.cycles, format_size_human(p.dimm).c_str(), o.node);
        bool header = false;
        auto rec = lab::run_cycle(mem, copts, i, [&](const lab::CycleRecord& c, const lab::PhaseRecord& ph) {
            if (!header) {
                print_header(o.node);
                print_row("before", -1, c.before, c.before, o.node);
                header = true;
            }
            if (ph.ok)
                print_row(ph.phase, ph.wall_s, ph.after, c.before, o.node);
            else
                std::printf("  %-8s FAILED after %.3f s: %s\n", ph.phase.c_str(), ph.wall_s, ph.error.c_str());
            std::fflush(stdout);
        });
        if (!rec.cleanup.empty()) std::printf("  cleanup: %s\n", rec.cleanup.c_str());
        if (rec.ok())
            std::printf("  blocks %d..%d at 0x%" PRIx64 ", zone %s, DEVICE_DELETED seen\n",
                        rec.dimms.front().blocks.front(), rec.dimms.back().blocks.back(), rec.dimms.front().addr,
                        rec.zone.c_str());
        if (rec.ok()) {
            double total = 0;
            for (const auto& ph : rec.phases) {
                walls[ph.phase].push_back(ph.wall_s);
                total += ph.wall_s;
            }
            walls["cycle"].push_back(total);
        }
        results["cycles"].push_back(lab::to_json(rec));
        save();
        if (!rec.ok()) ++failures;
        if (rec.guest_lost) {
            std::fprintf(stderr, "memhp: the guest is gone; stopping after %d cycle(s)\n", i);
            break;
        }
    }

    if (!walls.empty()) {
        std::printf("median host wall time over %zu good cycle(s):", walls["cycle"].size());
        for (const auto& name : {"add", "online", "offline", "remove", "cycle"})
            std::printf(" %s %.3f s%s", name, median(walls[name]), std::string(name) == "cycle" ? "\n" : ",");
    }
    return failures;
}

// --keep: leaves the guest running, says how to reach it, and waits for Ctrl-C.
void keep_guest_running(lab::Guest& guest) {
    const auto dir = guest.run_dir().string();
    std::printf(
        "\nguest left running (QEMU pid %d). In another terminal:\n"
        "  console (a root shell):  socat -,raw,echo=0,escape=0x1d UNIX-CONNECT:%s/console.sock   (Ctrl-] "
        "leaves)\n"
        "  QMP:                     socat - UNIX-CONNECT:%s/qmp-user.sock\n"
        "  the host's files are at the same paths in the guest; the guest's writes stay in its RAM.\n"
        "Press Ctrl-C here to stop the guest.\n",
        guest.qemu_pid(), dir.c_str(), dir.c_str());
    std::fflush(stdout);
    while (!stop_requested() && guest.alive()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    reset_stop();
}

// memhp lab's action: boots the guest and runs the cycles of the device chosen.
int run_lab_command(const LabOptions& o, CLI::App* cmd) {
    const auto p = plan_lab(o, cmd);
    auto guest = lab::Guest::boot(p.cfg, stderr_progress());
    lab::MemoryLab mem(*guest);
    const auto param = mem.memmap_on_memory_param();
    std::printf(
        "guest: kernel %s (%s), memmap_on_memory=%s, memory block %s, ready after %.1f s (guest uptime %.1f "
        "s)\n",
        guest->release().c_str(),
        guest->kernel().package.empty() ? guest->kernel().vmlinuz.c_str() : guest->kernel().package.c_str(),
        param.c_str(), format_size_human(mem.block_size()).c_str(), guest->boot_seconds(),
        guest->guest_uptime_at_ready());
    std::fflush(stdout);

    auto results = lab_results_json(o, p, *guest, mem, param);
    auto save = [&] {
        if (!o.json_path.empty()) write_file_atomic(o.json_path, results.dump(2) + "\n");
    };
    save();

    std::printf("onlining: %s (auto_online_blocks=%s)\n", guest->kernel_onlines() ? "by the kernel" : "by the lab",
                guest->online_policy().c_str());
    if (p.dax_bytes) {
        const int rc = run_lab_dax(o, p, *guest, mem, results, save);
        guest->shutdown();
        return rc;
    }
    if (p.vmem) {
        const int rc = run_virtio_mem_cycles(*guest, mem, p.vmem, o.node, o.cycles, std::chrono::seconds(o.timeout_s),
                                             results, save);
        guest->shutdown();
        return rc;
    }
    const int failures = run_dimm_cycles(o, p, *guest, mem, results, save);
    if (o.keep && guest->alive()) keep_guest_running(*guest);
    guest->shutdown();
    if (failures) {
        std::fprintf(stderr, "memhp: %d cycle(s) failed\n", failures);
        return 1;
    }
    return 0;
}

}  // namespace

Command add_lab_command(CLI::App& app) {
    auto o = std::make_shared<LabOptions>();
    auto* cmd = app.add_subcommand(
        "lab",
        "Boot a QEMU guest and hot-plug memory for real: N cycles of add -> online -> offline -> remove of one "
        "DIMM, with each phase's host-side wall time and the guest's memory after it.\n"
        "Example: memhp lab --kernel 6.1 --memmap-on-memory on --dimm 128M --node 1 --cycles 3");
    add_guest_options(cmd, o->guest);
    add_lab_cycle_options(cmd, *o);
    add_lab_device_options(cmd, *o);
    add_lab_output_options(cmd, *o);
    return {cmd, [o, cmd] { return run_lab_command(*o, cmd); }};
}

}  // namespace memhp::cli
