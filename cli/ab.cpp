// SPDX-License-Identifier: Apache-2.0
// memhp ab: the A/B hot-add benchmark (memmap from the page allocator vs on
// the added memory, or any two guest configurations), and memhp compare.
#include <unistd.h>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mutex>
#include <tuple>

#include "commands.hpp"
#include "guest_options.hpp"
#include "memhp/ab/gate_results.hpp"
#include "memhp/ab/matrix.hpp"
#include "memhp/ab/plots.hpp"
#include "memhp/ab/report.hpp"
#include "memhp/ab/runner.hpp"
#include "memhp/files.hpp"
#include "memhp/size.hpp"

namespace memhp::cli {
namespace {

std::string default_out_dir() {
    char buf[64];
    std::time_t t = std::time(nullptr);
    std::strftime(buf, sizeof buf, "memhp-results/ab-%Y%m%d-%H%M%S", std::localtime(&t));
    return buf;
}

void add_compare_flags(CLI::App* cmd, ab::CompareOptions& c) {
    cmd->add_option("--alpha", c.alpha, "significance level of the Mann-Whitney U test")
        ->check(CLI::Range(1e-6, 0.5))
        ->capture_default_str();
    cmd->add_option("--threshold", c.threshold,
                    "relative change of the median below which a significant difference still counts as the same "
                    "(0.05 = 5%)")
        ->check(CLI::Range(0.0, 10.0))
        ->capture_default_str();
}

constexpr const char* kGateStatusHelp =
    "Exit status with --gate: 0 no regression, 1 regression (the last arm significantly worse than the first on a "
    "primary lower-is-better metric, Holm-corrected, by at least --threshold), 2 bad input, 3 inconclusive (too few "
    "boots, the data cannot decide, or the host's speed drifted as much as the effect), 4 the run itself failed (a "
    "guest died, a cycle failed, events were lost).";

// --gate's options from the compare flags (--alpha is the family-wise error
// rate, --threshold the floor) and the machine's calibration.
void arm_gate(ab::CompareOptions& c) {
    c.gate = true;
    c.gate_opts.alpha = c.alpha;
    c.gate_opts.floor = c.threshold;
    c.calibration = ab::load_calibration(ab::default_calibration_path());
}

std::string host_name() {
    char b[256] = {};
    if (gethostname(b, sizeof b - 1) != 0) return "this machine";
    return b;
}

std::mutex progress_mu;
void progress_line(const std::string& s) {
    std::lock_guard lock(progress_mu);
    std::cerr << "memhp: " << s << std::endl;
}

// What the A/A's spread means for catching a real change: the smallest one
// caught in 90 % of runs at the calibrated settings, and the boots per arm
// (at the same cycles per boot, and at 4x as many) that 10, 20 and 30 %
// changes need.
void print_power(const ab::Calibration& cal, const ab::AbConfig& cfg) {
    const auto& opts = cfg.compare.gate_opts;
    const int m = ab::Calibration::tests_corrected();
    const int per_boot = cal.cycles_per_boot();
    std::printf("power (90 %% of runs; Welch's t at the Holm step alpha/%d; boot medians' spread from these runs):\n",
                m);
    std::printf("  %-22s %9s %9s %10s   boots per arm for +10/20/30 %% at %d and at %d cycles per boot\n", "metric",
                "boot sd", "cycle sd", "catches", per_boot, 4 * per_boot);
    for (const auto& s : cal.spreads) {
        std::string need;
        for (int c : {per_boot, 4 * per_boot}) {
            need += need.empty() ? "" : "  |  ";
            for (double r : {1.10, 1.20, 1.30}) {
                const auto n = ab::boots_needed(s, r, c, opts.alpha, m);
                need += (r == 1.10 ? "" : " / ") + (n ? std::to_string(*n) : std::string(">1000"));
            }
        }
        std::printf("  %-22s %8.1f%% %8.1f%% %+9.0f%%   %s\n", s.metric.c_str(), 100 * s.boot_sd, 100 * s.cycle_sd,
                    100 * (ab::detectable_ratio(s, cal.boots, per_boot, opts.alpha, m) - 1), need.c_str());
    }
}

// A complete A/A run already in cfg.out (an interrupted --aa, run again
// with the same --out, resumes after it), or nullopt when there is none or
// it did not finish. A finished run of other settings is an error: mixing
// it in would calibrate something else.
std::optional<nlohmann::json> finished_aa_run(const ab::AbConfig& cfg) {
    const auto path = cfg.out / "results.json";
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::nullopt;
    const auto r = ab::load_results(path);  // bounded, validated; BadResults (exit 2) names what is wrong
    if (r.status != "complete") return std::nullopt;
    const auto o = r.doc.find("options");  // validated: an object
    const auto b = o->find("boots");
    const bool same_boots = b != o->end() && b->is_number_integer() && b->get<long long>() == cfg.boots;
    const bool same = r.options.cycles == static_cast<std::uint64_t>(cfg.cycles) && same_boots &&
                      r.options.dimm_bytes == cfg.dimm_size && r.arms.size() == 2 &&
                      r.arms[0].name == cfg.arms[0].name && r.arms[1].name == cfg.arms[1].name;
    if (!same)
        throw UsageError(path.string() +
                         " is a finished run with other settings (cycles, boots, DIMM size or arms); "
                         "give --aa a new --out, or the settings it ran with");
    return r.doc;
}

// memhp ab --aa N: N gated A/A runs, one after another, each in its own
// directory; the false-alarm rate goes to calibration.json (out dir and
// cache). A run that fails is reported and left out of the rate. Runs
// already finished in the directory are reused, so an interrupted
// calibration resumes.
int run_calibration(ab::AbConfig cfg, int runs) {
    const auto top = cfg.out;
    ab::Calibration cal;
    cal.host = host_name();
    cal.boots = cfg.boots;
    cal.cycles = cfg.cycles;
    cal.kernel = cfg.arms.front().guest.kernel;
    int run_failed = 0;
    ab::SpreadAccumulator spread;
    const auto save = [&] {
        cal.spreads = spread.spreads();
        cal.date = ab::now_iso_utc();
        if (cal.runs == 0) return;
        const auto text = ab::to_json(cal).dump(1) + "\n";
        write_file_atomic(top / "calibration.json", text);
        std::filesystem::create_directories(ab::default_calibration_path().parent_path());
        write_file_atomic(ab::default_calibration_path(), text);
    };
    std::filesystem::create_directories(top);
    for (int i = 1; i <= runs; ++i) {
        char dir[32];
        std::snprintf(dir, sizeof dir, "aa-%03d", i);
        cfg.out = top / dir;
        nlohmann::json results;
        if (auto done = finished_aa_run(cfg)) {
            progress_line("A/A run " + std::to_string(i) + "/" + std::to_string(runs) +
                          ": reusing the finished run in " + cfg.out.string());
            results = std::move(*done);
        } else
            try {
                (void)ab::run_ab(
                    cfg, [](const std::string& s) { progress_line(s); }, results);
            } catch (const Interrupted&) {
                save();
                std::cerr << "memhp: interrupted after " << cal.runs << " A/A run(s); calibration so far in "
                          << (top / "calibration.json").string() << "\n";
                throw;
            }
        const auto g = ab::gate_run(results, cfg.arms.front().name, cfg.arms.back().name, cfg.compare.gate_opts);
        if (g.status == ab::GateStatus::RunFailed) {
            ++run_failed;
        } else {
            spread.add(results);
            ++cal.runs;
            cal.false_alarms += g.status == ab::GateStatus::Regression;
            cal.inconclusive += g.status == ab::GateStatus::Inconclusive;
        }
        progress_line("A/A run " + std::to_string(i) + "/" + std::to_string(runs) + ": " +
                      ab::gate_status_word(g.status) + " (" + g.reason + "); so far " +
                      std::to_string(cal.false_alarms) + " false alarm(s) in " + std::to_string(cal.runs) + " run(s)");
        save();
    }
    std::printf(
        "A/A calibration on %s: %d false alarm(s) in %d gated runs (%.1f %%), %d inconclusive, %d run(s) failed\n",
        cal.host.c_str(), cal.false_alarms, cal.runs, cal.runs ? 100.0 * cal.false_alarms / cal.runs : 0.0,
        cal.inconclusive, run_failed);
    print_power(cal, cfg);
    std::printf("calibration: %s (and %s)\n", (top / "calibration.json").c_str(),
                ab::default_calibration_path().c_str());
    if (cal.runs == 0) {
        std::fprintf(stderr, "memhp: every A/A run failed; see %s\n", top.c_str());
        return 4;
    }
    return 0;
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::string item;
    for (char c : s + ",") {
        if (c != ',') {
            item += c;
            continue;
        }
        if (!item.empty()) out.push_back(item);
        item.clear();
    }
    return out;
}

int run_matrix_command(const ab::MatrixConfig& m) {
    nlohmann::json results;
    int code = 0;
    try {
        code = ab::run_matrix(
            m, [](const std::string& s) { progress_line(s); }, results);
    } catch (const Interrupted&) {
        std::cerr << "memhp: interrupted; the finished cells are in " << (m.run.out / "results.json").string() << "\n";
        throw;
    }
    std::printf("%s\n", results.value("table_markdown", "").c_str());
    std::printf("results: %s\nsummary: %s\n", (m.run.out / "results.json").c_str(), (m.run.out / "summary.md").c_str());
    if (results.contains("plots"))
        for (const auto& [name, path] : results["plots"].items())
            std::printf("plot:    %s (and .png)\n", path.get<std::string>().c_str());
    if (results.contains("plot_error"))
        std::fprintf(stderr, "memhp: plot: %s\n", results["plot_error"].get<std::string>().c_str());
    return code;
}

struct AbOpts {
    GuestOptions guest;
    std::vector<std::string> arms;
    int cycles = 20;
    std::string dimm = "128M";
    int dimms = 1;
    int node = 1;
    std::string zone = "movable";
    int timeout_s = 120;
    std::string out;
    std::string fallback_kernel = "6.12";
    std::string fallback_size = "1G";
    bool scale = false;
    std::string scale_size = "8G";
    std::string device = "dimm";
    std::string scale_step;
    bool no_plots = false;
    bool list_metrics = false;
    ab::CompareOptions compare;
    std::string scenario;
    std::string margins = "96M,64M,56M,48M";
    std::string peer;
    int peer_timeout_s = 900;
    bool gate = false;
    int boots = 1;
    int aa = 0;
    bool matrix = false;
    std::string kernels = "5.10,6.1,6.12,7.2";
    std::string devices = "dimm,virtio-mem,dax";
    std::string mmos = "on,off";
};

// The arms and what each cycle hot-adds, and the fallback check after the cycles.
void add_ab_cycle_options(CLI::App* cmd, AbOpts& o) {
    cmd->add_option(
        "--arm", o.arms,
        "an arm, NAME:key=value,... with keys kernel (as --kernel), device (dimm: ACPI pc-DIMMs, the default; "
        "virtio-mem: one virtio-mem-pci device on --node, plugged to the cycle size by requested-size and "
        "back to 0, its memmap always from the page allocator; dax: a memmap= pmem range on node 1 made devdax by "
        "ndctl and given to kmem each cycle, "
        "mmo also setting the dax device's memmap_on_memory attribute where the kernel has one, 6.8+), "
        "mmo (on|off|default), online (auto|manual), probes (on|off: off runs "
        "no memhp trace in the guest, so the wall times show what watching costs), append (one "
        "kernel command-line word, repeatable), node-mem (sizes joined by '+', e.g. 1G+512M); unset keys "
        "come from the guest flags. Repeat for each arm; the first is the baseline. Default: "
        "page-alloc:mmo=off and altmap:mmo=on");
    cmd->add_option("--cycles", o.cycles, "rounds; each round runs one cycle in every arm, the order alternating")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    cmd->add_option("--dimm,--size", o.dimm,
                    "memory hot-added per cycle and device: each DIMM's size, or what virtio-mem plugs (a multiple of "
                    "the 128M memory block)")
        ->capture_default_str();
    cmd->add_option("--dimms", o.dimms, "DIMMs hot-added (and removed) together in each cycle")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->add_option("--node", o.node, "NUMA node the DIMMs go to (node 1 is memoryless by default, see --node-mem)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->add_option("--zone", o.zone, "zone to online into: movable, normal or auto")
        ->check(CLI::IsMember({"movable", "normal", "auto"}))
        ->capture_default_str();
    cmd->add_option("--timeout", o.timeout_s, "seconds any single wait inside a phase may take")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cmd->add_option("--out", o.out,
                    "output directory for results.json, summary.md and plots/ (default: "
                    "memhp-results/ab-YYYYmmdd-HHMMSS)");
    cmd->add_option(
           "--fallback-kernel", o.fallback_kernel,
           "after the cycles, hot-add one --fallback-size DIMM in every guest with memmap_on_memory on, and in "
           "an extra guest of this kernel, to show whether multi-block adds use the altmap (6.1 silently "
           "falls back); 'none' skips the extra guest")
        ->capture_default_str();
    cmd->add_option("--fallback-size", o.fallback_size, "DIMM size of that check; 0 skips it")->capture_default_str();
}

// --scale and its device, and what the run writes.
void add_ab_scale_options(CLI::App* cmd, AbOpts& o) {
    cmd->add_flag("--scale", o.scale,
                  "instead of cycles, hot-add and online --scale-size of memory in --dimm steps into each guest and "
                  "record how per-block add and online cost grows with the memory already present (cost curve)");
    cmd->add_option("--scale-size", o.scale_size,
                    "memory the scale ramp hot-adds (default 8G with DIMMs, 64G with --device virtio-mem)");
    cmd->add_option("--device", o.device,
                    "--scale: what the memory comes on: 'dimm' (one --dimm pc-dimm a step, up to the slot count) or "
                    "'virtio-mem' (one virtio-mem-pci device on --node, its backend reserve=off, grown by --scale-step "
                    "a step; the guest's boot memory is raised for the memmap, 1/64 of --scale-size, since virtio-mem "
                    "never puts it on the added memory; a size the host cannot hold is refused before boot)")
        ->check(CLI::IsMember({"dimm", "virtio-mem"}))
        ->capture_default_str();
    cmd->add_option(
        "--scale-step", o.scale_step,
        "--scale --device virtio-mem: memory added per step, a multiple of the 128M block (default: one block)");
    cmd->add_flag("--no-plots", o.no_plots, "do not draw plots (gnuplot)");
    cmd->add_flag("--list-metrics", o.list_metrics, "print the per-cycle metrics (markdown table) and exit");
}

// --scenario and --peer.
void add_ab_scenario_options(CLI::App* cmd, AbOpts& o) {
    cmd->add_option(
           "--scenario", o.scenario,
           "set every guest's memory up with memhp-hog before the cycles, then classify each add (succeeded, "
           "failed with errno, memmap from 4 KiB base pages instead of a PMD, OOM kill, free memory consumed): "
           "'pressure' locks node 0's free memory down to each of --margins in turn; 'fragmented' leaves node 0 "
           "plenty of free memory but no free block of order >= 9, with compaction off. Scenario defaults: "
           "--cycles 2 (per margin), --dimms 4 (single-block DIMMs, so 6.1 can use the altmap), no fallback check")
        ->check(CLI::IsMember({"pressure", "fragmented"}));
    cmd->add_option(
           "--margins", o.margins,
           "--scenario pressure: node 0 MemFree the hog leaves, comma-separated, swept largest first; the summary "
           "names the margin where each arm starts failing. Margins below the kernel's min watermark cannot be "
           "reached (the hog is OOM-killed; recorded)")
        ->capture_default_str();
    cmd->add_option(
           "--peer", o.peer,
           "also time the add, online, offline and remove phases with an independent tool in every arm's guest, "
           "on the same kernel functions and in the same cycles: 'bpftrace' (Debian's). The summary then "
           "gives, per phase, memhp's and bpftrace's medians and their per-cycle difference, and both tools' "
           "time to attach (about 5-8 s each under TCG)")
        ->check(CLI::IsMember({"bpftrace"}));
    cmd->add_option("--peer-timeout", o.peer_timeout_s, "seconds the peer may take to attach its probes in a guest")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
}

// --boots, --gate, --aa calibration and --matrix.
void add_ab_gate_matrix_options(CLI::App* cmd, AbOpts& o) {
    cmd->add_option("--boots", o.boots,
                    "guests per arm, booted one after another with the rounds split evenly across them; the gate "
                    "treats boots, not cycles, as replicates (a boot's memory layout can shift every cycle it runs). "
                    "Default: 1, or 4 with --gate or --aa")
        ->check(CLI::Range(1, 1000));
    cmd->add_flag("--gate", o.gate,
                  std::string("a CI gate: judge the last arm against the first (boot medians, Welch's t, Holm across "
                              "the primary metrics, a drift check on a reference workload timed in every round) and "
                              "exit with the verdict. ") +
                      kGateStatusHelp);
    cmd->add_option("--aa", o.aa,
                    "calibration: run this many A/A gated runs (both arms the first --arm, or page-alloc) and report "
                    "how often the gate cried regression; written to the output directory and to "
                    "~/.cache/memhp/calibration.json, which every gated summary then names. About 2 minutes a run")
        ->check(CLI::Range(1, 1000));
    cmd->add_flag("--matrix", o.matrix,
                  "run every cell kernel x device x memmap_on_memory mode of --kernels, --devices and --mmo, one guest "
                  "and a few cycles each (--cycles, default 3 here), skipping impossible cells with the reason before "
                  "any boot (no memmap_on_memory before 5.12; virtio-mem once per kernel, as it never uses the "
                  "altmap; dax's attribute only from 6.8). Writes one table (summary.md "
                  "and results.json) and one plot (plots/matrix.svg); each cell's own run is in cells/NAME/. A failed "
                  "cell is recorded with its reason and the matrix goes on. The lab onlines (--online manual, "
                  "--zone movable) unless --online is given, so every kernel onlines alike");
    cmd->add_option("--kernels", o.kernels, "--matrix: kernels, comma-separated (each as --kernel)")
        ->capture_default_str();
    cmd->add_option("--devices", o.devices, "--matrix: devices, comma-separated: dimm, virtio-mem, dax")
        ->capture_default_str();
    cmd->add_option("--mmo", o.mmos, "--matrix: memmap_on_memory modes, comma-separated: on, off, default")
        ->capture_default_str();
}

// The arms, and with --aa the one arm against itself. --aa also skips the
// fallback check unless --fallback-size is given: it sets o.fallback_size,
// which make_ab_config reads after this.
void set_ab_arms(AbOpts& o, CLI::App* cmd, const lab::GuestConfig& base, ab::AbConfig& cfg) {
    if (o.arms.empty()) cfg.arms = ab::default_arms(base);
    for (const auto& a : o.arms) cfg.arms.push_back(ab::parse_arm(a, base));
    cfg.cycles = o.cycles;
    cfg.boots = cmd->count("--boots") || !(o.gate || o.aa) ? o.boots : 4;
    if (o.aa) {
        if (o.arms.size() > 1) throw UsageError("--aa runs one arm against itself: give at most one --arm");
        if (o.scale || !o.scenario.empty()) throw UsageError("--aa runs the cycle rounds, not --scale or --scenario");
        const auto one = cfg.arms.front();
        cfg.arms = {one, one};
        cfg.arms[0].name = one.name + "-a";
        cfg.arms[1].name = one.name + "-b";
        if (!cmd->count("--fallback-size")) o.fallback_size = "0";
    }
}

// --scenario and its defaults (fewer cycles, single-block DIMMs, no fallback check).
void set_ab_scenario(const AbOpts& o, CLI::App* cmd, ab::AbConfig& cfg) {
    cfg.scenario = ab::parse_scenario(o.scenario);
    if (cfg.scenario != ab::Scenario::None) {
        if (!cmd->count("--cycles")) cfg.cycles = 2;
        if (!cmd->count("--dimms")) cfg.dimms = 4;
        if (!cmd->count("--fallback-size")) cfg.fallback_size = 0;
        if (cfg.scenario == ab::Scenario::Pressure) cfg.margins = ab::parse_margins(o.margins);
        cfg.title = std::string("hot-add A/B, scenario ") + ab::scenario_name(cfg.scenario);
    }
}

// The run's configuration from the flags, in the order the flags are
// checked (the first bad one is the one reported). With --gate or --aa it
// also arms o.compare's gate.
ab::AbConfig make_ab_config(AbOpts& o, CLI::App* cmd, const lab::GuestConfig& base) {
    ab::AbConfig cfg;
    set_ab_arms(o, cmd, base, cfg);
    cfg.dimm_size = parse_size(o.dimm);
    cfg.dimms = o.dimms;
    cfg.node = o.node;
    cfg.zone = o.zone;
    cfg.timeout = std::chrono::seconds(o.timeout_s);
    cfg.fallback_kernel = o.fallback_kernel == "none" ? "" : o.fallback_kernel;
    if (!cfg.fallback_kernel.empty()) (void)lab::classify_kernel_spec(cfg.fallback_kernel);
    cfg.fallback_size = o.fallback_size == "0" ? 0 : parse_size(o.fallback_size);
    cfg.scale = o.scale;
    cfg.scale_size = parse_size(o.scale_size);
    cfg.scale_device = o.device == "virtio-mem" ? ab::ScaleDevice::VirtioMem : ab::ScaleDevice::Dimm;
    // virtio-mem has no slot limit: its default is the size where the zone walk shows (64G, 512 steps).
    if (cfg.scale_device == ab::ScaleDevice::VirtioMem && !cmd->count("--scale-size"))
        cfg.scale_size = std::uint64_t{64} << 30;
    if (!o.scale && (cmd->count("--device") || !o.scale_step.empty()))
        throw UsageError("--device and --scale-step go with --scale");
    cfg.scale_step = o.scale_step.empty() ? 0 : parse_size(o.scale_step);
    cfg.out = o.out.empty() ? default_out_dir() : o.out;
    cfg.plots = !o.no_plots;
    if (o.gate || o.aa) arm_gate(o.compare);
    cfg.compare = o.compare;
    set_ab_scenario(o, cmd, cfg);
    cfg.peer = o.peer;
    cfg.peer_attach_timeout = std::chrono::seconds(o.peer_timeout_s);
    return cfg;
}

// memhp ab --matrix: the cells of --kernels x --devices x --mmo, each run
// with cfg's settings.
int run_ab_matrix(const AbOpts& o, CLI::App* cmd, const lab::GuestConfig& base, const ab::AbConfig& cfg) {
    for (const char* f : {"--arm", "--scale", "--scenario", "--gate", "--aa", "--peer", "--boots"})
        if (cmd->count(f)) throw UsageError(std::string("--matrix runs its own cells: it does not take ") + f);
    ab::MatrixConfig m;
    m.kernels = split_list(o.kernels);
    m.devices.clear();
    for (const auto& d : split_list(o.devices)) m.devices.push_back(ab::parse_device(d));
    m.mmos = split_list(o.mmos);
    m.guest = base;
    m.run = cfg;
    if (!cmd->count("--cycles")) m.run.cycles = 3;
    // Every kernel onlines the same way, into ZONE_MOVABLE: left to
    // itself 7.2 onlines into ZONE_NORMAL of the memoryless node, and
    // the first offline there failed with EBUSY (a matrix run, 2026-12-02).
    if (!cmd->count("--online")) m.guest.online = lab::OnlineMode::Manual;
    return run_matrix_command(m);
}

// One A/B run: runs it, prints the summary and where the files are, and
// returns the run's exit status (with --gate, the gate's verdict).
int run_ab_and_print(const ab::AbConfig& cfg) {
    std::mutex mu;
    auto progress = [&mu](const std::string& s) {
        std::lock_guard lock(mu);
        std::cerr << "memhp: " << s << std::endl;
    };
    nlohmann::json results;
    int code = 0;
    try {
        code = ab::run_ab(cfg, progress, results);
    } catch (const Interrupted&) {
        std::cerr << "memhp: interrupted; what was measured is in " << (cfg.out / "results.json").string() << "\n";
        throw;
    }
    std::printf("%s\n", read_file(cfg.out / "summary.md").c_str());
    std::printf("results: %s\nsummary: %s\n", (cfg.out / "results.json").c_str(), (cfg.out / "summary.md").c_str());
    if (results.contains("plots"))
        for (const auto& [name, path] : results["plots"].items())
            std::printf("plot:    %s (and .png)\n", path.get<std::string>().c_str());
    std::printf("wall time: %.0f s\n", results.value("wall_s", 0.0));
    for (const auto& e : results.value("errors", nlohmann::json::array()))
        std::fprintf(stderr, "memhp: %s\n", e.get<std::string>().c_str());
    if (cfg.compare.gate) {
        const auto g = ab::gate_run(results, cfg.arms.front().name, cfg.arms.back().name, cfg.compare.gate_opts);
        std::fprintf(stderr, "memhp: gate: %s: %s\n", ab::gate_status_word(g.status), g.reason.c_str());
        return static_cast<int>(g.status);
    }
    return code;
}

// memhp ab's action: --list-metrics, --matrix, --aa or one A/B run.
int run_ab_command(AbOpts& o, CLI::App* cmd) {
    if (o.list_metrics) {
        std::printf("%s", ab::metrics_markdown().c_str());
        return 0;
    }
    const auto base = to_guest_config(o.guest);
    const auto cfg = make_ab_config(o, cmd, base);
    if (o.matrix) return run_ab_matrix(o, cmd, base, cfg);
    if (cfg.compare.gate && cfg.boots < 2)
        throw UsageError(
            "--gate needs --boots 2 or more: with one boot per arm a boot's layout cannot be told "
            "from the arm's effect");
    ab::validate(cfg);  // before any download or boot
    if (o.aa) return run_calibration(cfg, o.aa);
    return run_ab_and_print(cfg);
}

}  // namespace

Command add_ab_command(CLI::App& app) {
    auto o = std::make_shared<AbOpts>();
    auto* cmd = app.add_subcommand(
        "ab",
        "The A/B hot-add benchmark: boots one QEMU guest per arm (default: Debian 6.1 with "
        "memory_hotplug.memmap_on_memory=0, memmap from alloc_pages_node, against =1, memmap on the added memory), "
        "runs memhp's probes in each and interleaved add -> online -> offline -> remove cycles, then writes "
        "results.json, summary.md (per metric: both arms' median and spread, ratio, Mann-Whitney p) and plots.\n"
        "Examples:\n"
        "  memhp ab                                  # the default comparison, 2-3 minutes under TCG\n"
        "  memhp ab --kernel 6.12 --cycles 30\n"
        "  memhp ab --arm old:kernel=6.1,mmo=on --arm new:kernel=6.12,mmo=on\n"
        "  memhp ab --scale                          # 8 GiB in 128M DIMMs: cost curve in both modes\n"
        "  memhp ab --scale --device virtio-mem --scale-size 64G --arm k612:kernel=6.12 --arm k72:kernel=7.2\n"
        "  memhp ab --scenario fragmented            # hot-add with no free order-9 block on node 0\n"
        "  memhp ab --scenario pressure --margins 64M,48M   # hot-add with node 0's free memory locked down\n"
        "  memhp ab --arm dimm:device=dimm --arm vmem:device=virtio-mem   # ACPI DIMMs against virtio-mem blocks\n"
        "  memhp ab --matrix --kernels 5.10,6.1,6.12,7.2 --devices dimm,virtio-mem   # every kernel x device x mode");
    add_guest_options(cmd, o->guest, false);
    add_ab_cycle_options(cmd, *o);
    add_ab_scale_options(cmd, *o);
    add_ab_scenario_options(cmd, *o);
    add_ab_gate_matrix_options(cmd, *o);
    add_compare_flags(cmd, o->compare);
    return {cmd, [o, cmd] { return run_ab_command(*o, cmd); }};
}

// memhp compare --gate: one run's arms, or one arm in two runs.
int gate_compare(const std::string& base_path, const std::string& cand_path, std::string base_arm, std::string cand_arm,
                 const std::string& markdown, ab::CompareOptions compare) {
    arm_gate(compare);
    const auto base = ab::load_results(base_path);
    std::error_code ec;
    const bool one_run = cand_path.empty() || std::filesystem::equivalent(base_path, cand_path, ec);
    const auto cand = one_run ? base : ab::load_results(cand_path);
    const auto& arms = base.arms;  // the loader refuses a file without arms
    if (base_arm.empty()) base_arm = arms.front().name;
    if (cand_arm.empty()) cand_arm = one_run ? arms.back().name : base_arm;
    if (one_run && base_arm == cand_arm)
        throw ab::BadResults(base_path + " has one arm only ('" + base_arm +
                             "'): the gate needs two arms of one run, or a second results file");
    for (const auto* r : {&base, &cand})
        if (r->options.mode != "cycles" || r->options.scenario != "none")
            throw ab::BadResults("--gate judges cycle runs, not --scale or --scenario runs");
    const auto g = one_run ? ab::gate_run(base.doc, base_arm, cand_arm, compare.gate_opts)
                           : ab::gate_runs(base.doc, cand.doc, base_arm, cand_arm, compare.gate_opts);
    const std::string md = "## memhp compare --gate\n\nbase: `" + base_path + "` arm `" + base_arm +
                           "`  \ncandidate: `" + (one_run ? base_path : cand_path) + "` arm `" + cand_arm + "`\n" +
                           ab::gate_markdown(g, base_arm, cand_arm, compare.gate_opts, compare.calibration);
    std::printf("%s", md.c_str());
    if (!markdown.empty()) write_file(markdown, try_read_file(markdown).value_or("") + md);
    return static_cast<int>(g.status);
}

namespace {

struct CompareOpts {
    std::string base, cand;
    std::vector<std::string> arms;
    std::string base_arm, cand_arm;
    std::vector<std::string> metrics;
    std::string markdown;
    bool allow_mismatch = false;
    bool gate = false;
    ab::CompareOptions compare;
};

// Refuses runs whose numbers are not comparable (unless --allow-mismatch).
void check_comparable(const ab::Results& base, const ab::Results& cand) {
    const auto &bo = base.options, &co = cand.options;
    auto differ = [](const char* key, const std::string& b, const std::string& c) {
        if (b != c)
            throw ab::BadResults(std::string("the runs differ in ") + key + " (" + b + " vs " + c +
                                 "): their numbers are not comparable; --allow-mismatch compares anyway");
    };
    differ("mode", bo.mode, co.mode);
    differ("dimm_bytes", std::to_string(bo.dimm_bytes), std::to_string(co.dimm_bytes));
    differ("dimms", std::to_string(bo.dimms), std::to_string(co.dimms));
    differ("node", std::to_string(bo.node), std::to_string(co.node));
    differ("zone", bo.zone, co.zone);
}

// The (base arm, candidate arm) pairs to compare: --base-arm/--cand-arm,
// else each --arm in both files, else every arm both files have.
std::vector<std::pair<std::string, std::string>> compare_pairs(const CompareOpts& o, const ab::Results& base,
                                                               const ab::Results& cand) {
    for (const auto* name : {&o.base_arm, &o.cand_arm})
        if (!name->empty() && !ab::valid_arm_name(*name))
            throw UsageError("--base-arm/--cand-arm '" + *name +
                             "': not an arm name (1-32 letters, digits, '.', '_' or '-')");
    for (const auto& a : o.arms)
        if (!ab::valid_arm_name(a))
            throw UsageError("--arm '" + a + "': not an arm name (1-32 letters, digits, '.', '_' or '-')");
    std::vector<std::pair<std::string, std::string>> pairs;
    if (!o.base_arm.empty()) {
        pairs.emplace_back(o.base_arm, o.cand_arm);
    } else if (!o.arms.empty()) {
        for (const auto& a : o.arms) pairs.emplace_back(a, a);
    } else {
        for (const auto& a : base.arms)
            if (ab::find_arm(cand, a.name)) pairs.emplace_back(a.name, a.name);
        if (pairs.empty()) {
            std::string names;
            for (const auto& a : cand.arms) names += " " + a.name;
            throw ab::BadResults("the files have no arm in common (candidate arms:" + names +
                                 "); pick a pair with --base-arm and --cand-arm");
        }
    }
    return pairs;
}

// An arm whose tracer lost events has records short of operations or
// pages: neither "regression" nor "none" can be said of it. Returns what
// was lost, or "" when nothing was.
std::string trace_losses(const std::vector<std::pair<std::string, std::string>>& pairs, const ab::Results& base,
                         const ab::Results& cand) {
    std::string lost;
    for (const auto& [b, c] : pairs)
        for (const auto& [file, name, label] : {std::tuple{&base, b, "base"}, std::tuple{&cand, c, "candidate"}}) {
            const auto* arm = ab::find_arm(*file, name);
            if (arm && arm->guest && !arm->guest->trace_losses.empty())
                lost +=
                    std::string(lost.empty() ? "" : "; ") + label + " arm '" + name + "': " + arm->guest->trace_losses;
        }
    return lost;
}

// memhp compare's action: the gate, or the per-metric comparison of the pairs.
int run_compare_command(CompareOpts& o) {
    if (o.gate) {
        if (!o.metrics.empty() || !o.arms.empty())
            throw UsageError(
                "--metric and --arm do not go with --gate: the gate judges its primary metrics of "
                "one pair of arms (--base-arm, --cand-arm)");
        return gate_compare(o.base, o.cand, o.base_arm, o.cand_arm, o.markdown, o.compare);
    }
    if (o.cand.empty()) throw UsageError("CANDIDATE is required (or use --gate on one results file)");
    for (const auto& m : o.metrics)
        if (!ab::find_metric(m)) throw UsageError("--metric " + m + ": no such metric (see docs/ab-json.md)");
    if (o.base_arm.empty() != o.cand_arm.empty()) throw UsageError("--base-arm and --cand-arm go together");
    o.compare.metrics = o.metrics;
    const auto base = ab::load_results(o.base), cand = ab::load_results(o.cand);
    if (!o.allow_mismatch) check_comparable(base, cand);
    const auto pairs = compare_pairs(o, base, cand);
    std::string md = "## memhp compare\n\nbase: `" + o.base + "`  \ncandidate: `" + o.cand + "`\n";
    bool worse = false;
    for (const auto& [b, c] : pairs) {
        const auto* ba = ab::find_arm(base, b);
        const auto* ca = ab::find_arm(cand, c);
        if (!ba) throw ab::BadResults(o.base + ": no arm named '" + b + "'");
        if (!ca) throw ab::BadResults(o.cand + ": no arm named '" + c + "'");
        auto cs = ab::compare_arms(*ba, *ca, o.compare);
        if (cs.empty()) throw ab::BadResults("arm '" + b + "': no metric has samples in either file");
        worse = worse || ab::any_worse(cs);
        md += "\n### arm " + (b == c ? b : b + " → " + c) + "\n\n" +
              ab::markdown_table(cs, "base", "candidate", o.compare);
    }
    const std::string lost = trace_losses(pairs, base, cand);
    if (!lost.empty())
        md += "\n**Inconclusive**: " + lost + "; no verdict on incomplete records (exit 3).\n";
    else
        md += worse ? "\n**Regression**: the candidate is significantly worse on at least one metric.\n"
                    : "\nNo significant regression.\n";
    std::printf("%s", md.c_str());
    if (!o.markdown.empty()) {
        append_file(o.markdown, md);
    }
    if (!lost.empty()) {
        std::fprintf(stderr, "memhp compare: inconclusive: %s\n", lost.c_str());
        return 3;
    }
    return worse ? 1 : 0;
}

}  // namespace

Command add_compare_command(CLI::App& app) {
    auto o = std::make_shared<CompareOpts>();
    auto* cmd = app.add_subcommand(
        "compare",
        "Compare two `memhp ab` results files metric by metric (Mann-Whitney U test on the per-cycle samples) and "
        "exit 1 when the candidate is significantly worse on any metric where lower is better: a CI gate.\n"
        "Exit status: 0 no significant regression, 1 regression, 2 bad input (unreadable, malformed or "
        "mismatched files).\n"
        "With --gate, the CI gate of `memhp ab --gate` instead: on one results file (CANDIDATE omitted, or the same "
        "file) it judges the last arm against the first; on two files, the same arm in two runs (said plainly in the "
        "verdict, and a regression the drift between the runs could explain is inconclusive).\n" +
            std::string(kGateStatusHelp) +
            "\nExamples:\n"
            "  memhp compare base/results.json cand/results.json --markdown \"$GITHUB_STEP_SUMMARY\"\n"
            "  memhp compare --gate run/results.json     # the arms of one interleaved run");
    cmd->add_option("BASE", o->base, "baseline results.json")->required();
    cmd->add_option("CANDIDATE", o->cand, "candidate results.json (optional with --gate)");
    cmd->add_flag("--gate", o->gate, "judge with the CI gate (boot medians, Holm, drift) and exit with its status");
    cmd->add_option("--arm", o->arms, "compare only this arm (repeatable; default: every arm both files have)");
    cmd->add_option("--base-arm", o->base_arm, "compare this arm of BASE ...");
    cmd->add_option("--cand-arm", o->cand_arm, "... with this arm of CANDIDATE (e.g. two arms of one run)");
    cmd->add_option("--metric", o->metrics, "compare only this metric (repeatable; names as in docs/ab-json.md)");
    cmd->add_option("--markdown", o->markdown, "also append the markdown report to this file (a CI job summary)");
    cmd->add_flag("--allow-mismatch", o->allow_mismatch,
                  "compare even when the runs hot-plugged different DIMM sizes, counts, nodes or zones");
    add_compare_flags(cmd, o->compare);
    return {cmd, [o] { return run_compare_command(*o); }};
}

Command add_report_command(CLI::App& app) {
    struct Opts {
        std::string results;
        std::string out;
        bool no_plots = false;
        ab::CompareOptions compare;
    };
    auto o = std::make_shared<Opts>();
    auto* cmd = app.add_subcommand(
        "report",
        "Render summary.md and the plots of a `memhp ab` results file again (e.g. with other --alpha/--threshold, "
        "or after a run whose plotting failed), without running anything.\n"
        "Exit status: 0 rendered, 2 bad input (unreadable or malformed results, the message names the field), "
        "1 anything else (e.g. gnuplot failed).");
    cmd->add_option("RESULTS", o->results, "results.json written by memhp ab")->required();
    cmd->add_option("--out", o->out, "directory for summary.md and plots/ (default: the results file's directory)");
    cmd->add_flag("--no-plots", o->no_plots, "do not draw plots (gnuplot)");
    add_compare_flags(cmd, o->compare);
    return {cmd, [o] {
                auto results = ab::load_results(o->results);
                const std::filesystem::path out = o->out.empty() ? std::filesystem::absolute(o->results).parent_path()
                                                                 : std::filesystem::path(o->out);
                std::filesystem::create_directories(out);
                if (!o->no_plots) {
                    const auto plots = ab::write_plots(results, out / "plots");
                    for (const auto& [name, path] : plots.items())
                        std::printf("plot:    %s (and .png)\n", path.get<std::string>().c_str());
                }
                write_file_atomic(out / "summary.md", ab::summary_markdown(results, o->compare));
                std::printf("summary: %s\n", (out / "summary.md").c_str());
                return 0;
            }};
}

}  // namespace memhp::cli
