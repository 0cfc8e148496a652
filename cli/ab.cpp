// memhp ab: the A/B hot-add benchmark (memmap from the page allocator vs on
// the added memory, or any two guest configurations), and memhp compare.
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mutex>

#include "commands.hpp"
#include "guest_options.hpp"
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

}  // namespace

Command add_ab_command(CLI::App& app) {
    struct Opts {
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
        bool no_plots = false;
        bool list_metrics = false;
        ab::CompareOptions compare;
        std::string scenario;
        std::string margins = "96M,64M,56M,48M";
        std::string peer;
        int peer_timeout_s = 900;
    };
    auto o = std::make_shared<Opts>();
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
        "  memhp ab --scenario fragmented            # hot-add with no free order-9 block on node 0\n"
        "  memhp ab --scenario pressure --margins 64M,48M   # hot-add with node 0's free memory locked down");
    add_guest_options(cmd, o->guest, false);
    cmd->add_option("--arm", o->arms,
                    "an arm, NAME:key=value,... with keys kernel (as --kernel), mmo (on|off|default), append (one "
                    "kernel command-line word, repeatable), node-mem (sizes joined by '+', e.g. 1G+512M); unset keys "
                    "come from the guest flags. Repeat for each arm; the first is the baseline. Default: "
                    "page-alloc:mmo=off and altmap:mmo=on");
    cmd->add_option("--cycles", o->cycles, "rounds; each round runs one cycle in every arm, the order alternating")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    cmd->add_option("--dimm", o->dimm, "size of each DIMM (a multiple of the 128M memory block)")->capture_default_str();
    cmd->add_option("--dimms", o->dimms, "DIMMs hot-added (and removed) together in each cycle")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->add_option("--node", o->node, "NUMA node the DIMMs go to (node 1 is memoryless by default, see --node-mem)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    cmd->add_option("--zone", o->zone, "zone to online into: movable, normal or auto")
        ->check(CLI::IsMember({"movable", "normal", "auto"}))
        ->capture_default_str();
    cmd->add_option("--timeout", o->timeout_s, "seconds any single wait inside a phase may take")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cmd->add_option("--out", o->out,
                    "output directory for results.json, summary.md and plots/ (default: "
                    "memhp-results/ab-YYYYmmdd-HHMMSS)");
    cmd->add_option("--fallback-kernel", o->fallback_kernel,
                    "after the cycles, hot-add one --fallback-size DIMM in every guest with memmap_on_memory on, and in "
                    "an extra guest of this kernel, to show whether multi-block adds use the altmap (6.1 silently "
                    "falls back); 'none' skips the extra guest")
        ->capture_default_str();
    cmd->add_option("--fallback-size", o->fallback_size, "DIMM size of that check; 0 skips it")->capture_default_str();
    cmd->add_flag("--scale", o->scale,
                  "instead of cycles, hot-add and online --scale-size of memory in --dimm steps into each guest and "
                  "record how per-block add and online cost grows with the memory already present (cost curve)");
    cmd->add_option("--scale-size", o->scale_size, "memory the scale ramp hot-adds")->capture_default_str();
    cmd->add_flag("--no-plots", o->no_plots, "do not draw plots (gnuplot)");
    cmd->add_flag("--list-metrics", o->list_metrics, "print the per-cycle metrics (markdown table) and exit");
    cmd->add_option("--scenario", o->scenario,
                    "set every guest's memory up with memhp-hog before the cycles, then classify each add (succeeded, "
                    "failed with errno, memmap from 4 KiB base pages instead of a PMD, OOM kill, free memory consumed): "
                    "'pressure' locks node 0's free memory down to each of --margins in turn; 'fragmented' leaves node 0 "
                    "plenty of free memory but no free block of order >= 9, with compaction off. Scenario defaults: "
                    "--cycles 2 (per margin), --dimms 4 (single-block DIMMs, so 6.1 can use the altmap), no fallback check")
        ->check(CLI::IsMember({"pressure", "fragmented"}));
    cmd->add_option("--margins", o->margins,
                    "--scenario pressure: node 0 MemFree the hog leaves, comma-separated, swept largest first; the summary "
                    "names the margin where each arm starts failing. Margins below the kernel's min watermark cannot be "
                    "reached (the hog is OOM-killed; recorded)")
        ->capture_default_str();
    cmd->add_option("--peer", o->peer,
                    "also time the add, online, offline and remove phases with an independent tool in every arm's guest, "
                    "on the same kernel functions and in the same cycles: 'bpftrace' (Debian's). The summary then "
                    "gives, per phase, memhp's and bpftrace's medians and their per-cycle difference, and both tools' "
                    "time to attach (about 5-8 s each under TCG)")
        ->check(CLI::IsMember({"bpftrace"}));
    cmd->add_option("--peer-timeout", o->peer_timeout_s, "seconds the peer may take to attach its probes in a guest")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    add_compare_flags(cmd, o->compare);
    return {cmd, [o, cmd] {
        if (o->list_metrics) {
            std::printf("%s", ab::metrics_markdown().c_str());
            return 0;
        }
        ab::AbConfig cfg;
        auto base = to_guest_config(o->guest);
        if (o->arms.empty()) cfg.arms = ab::default_arms(base);
        for (const auto& a : o->arms) cfg.arms.push_back(ab::parse_arm(a, base));
        cfg.cycles = o->cycles;
        cfg.dimm_size = parse_size(o->dimm);
        cfg.dimms = o->dimms;
        cfg.node = o->node;
        cfg.zone = o->zone;
        cfg.timeout = std::chrono::seconds(o->timeout_s);
        cfg.fallback_kernel = o->fallback_kernel == "none" ? "" : o->fallback_kernel;
        if (!cfg.fallback_kernel.empty()) (void)lab::classify_kernel_spec(cfg.fallback_kernel);
        cfg.fallback_size = o->fallback_size == "0" ? 0 : parse_size(o->fallback_size);
        cfg.scale = o->scale;
        cfg.scale_size = parse_size(o->scale_size);
        cfg.out = o->out.empty() ? default_out_dir() : o->out;
        cfg.plots = !o->no_plots;
        cfg.compare = o->compare;
        cfg.scenario = ab::parse_scenario(o->scenario);
        if (cfg.scenario != ab::Scenario::None) {
            if (!cmd->count("--cycles")) cfg.cycles = 2;
            if (!cmd->count("--dimms")) cfg.dimms = 4;
            if (!cmd->count("--fallback-size")) cfg.fallback_size = 0;
            if (cfg.scenario == ab::Scenario::Pressure) cfg.margins = ab::parse_margins(o->margins);
            cfg.title = std::string("hot-add A/B, scenario ") + ab::scenario_name(cfg.scenario);
        }
        cfg.peer = o->peer;
        cfg.peer_attach_timeout = std::chrono::seconds(o->peer_timeout_s);
        ab::validate(cfg);  // before any download or boot

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
        return code;
    }};
}

Command add_compare_command(CLI::App& app) {
    struct Opts {
        std::string base, cand;
        std::vector<std::string> arms;
        std::string base_arm, cand_arm;
        std::vector<std::string> metrics;
        std::string markdown;
        bool allow_mismatch = false;
        ab::CompareOptions compare;
    };
    auto o = std::make_shared<Opts>();
    auto* cmd = app.add_subcommand(
        "compare",
        "Compare two `memhp ab` results files metric by metric (Mann-Whitney U test on the per-cycle samples) and "
        "exit 1 when the candidate is significantly worse on any metric where lower is better: a CI gate.\n"
        "Exit status: 0 no significant regression, 1 regression, 2 bad input (unreadable, malformed or "
        "mismatched files).\n"
        "Example: memhp compare base/results.json cand/results.json --markdown \"$GITHUB_STEP_SUMMARY\"");
    cmd->add_option("BASE", o->base, "baseline results.json")->required();
    cmd->add_option("CANDIDATE", o->cand, "candidate results.json")->required();
    cmd->add_option("--arm", o->arms, "compare only this arm (repeatable; default: every arm both files have)");
    cmd->add_option("--base-arm", o->base_arm, "compare this arm of BASE ...");
    cmd->add_option("--cand-arm", o->cand_arm, "... with this arm of CANDIDATE (e.g. two arms of one run)");
    cmd->add_option("--metric", o->metrics, "compare only this metric (repeatable; names as in docs/ab-json.md)");
    cmd->add_option("--markdown", o->markdown, "also append the markdown report to this file (a CI job summary)");
    cmd->add_flag("--allow-mismatch", o->allow_mismatch,
                  "compare even when the runs hot-plugged different DIMM sizes, counts, nodes or zones");
    add_compare_flags(cmd, o->compare);
    return {cmd, [o] {
        for (const auto& m : o->metrics)
            if (!ab::find_metric(m)) throw UsageError("--metric " + m + ": no such metric (see docs/ab-json.md)");
        if (o->base_arm.empty() != o->cand_arm.empty())
            throw UsageError("--base-arm and --cand-arm go together");
        o->compare.metrics = o->metrics;
        const auto base = ab::load_results(o->base), cand = ab::load_results(o->cand);
        if (!o->allow_mismatch) {
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
        for (const auto* name : {&o->base_arm, &o->cand_arm})
            if (!name->empty() && !ab::valid_arm_name(*name))
                throw UsageError("--base-arm/--cand-arm '" + *name + "': not an arm name (1-32 letters, digits, '.', '_' or '-')");
        for (const auto& a : o->arms)
            if (!ab::valid_arm_name(a)) throw UsageError("--arm '" + a + "': not an arm name (1-32 letters, digits, '.', '_' or '-')");
        std::vector<std::pair<std::string, std::string>> pairs;
        if (!o->base_arm.empty()) {
            pairs.emplace_back(o->base_arm, o->cand_arm);
        } else if (!o->arms.empty()) {
            for (const auto& a : o->arms) pairs.emplace_back(a, a);
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
        std::string md = "## memhp compare\n\nbase: `" + o->base + "`  \ncandidate: `" + o->cand + "`\n";
        bool worse = false;
        for (const auto& [b, c] : pairs) {
            const auto* ba = ab::find_arm(base, b);
            const auto* ca = ab::find_arm(cand, c);
            if (!ba) throw ab::BadResults(o->base + ": no arm named '" + b + "'");
            if (!ca) throw ab::BadResults(o->cand + ": no arm named '" + c + "'");
            auto cs = ab::compare_arms(*ba, *ca, o->compare);
            if (cs.empty()) throw ab::BadResults("arm '" + b + "': no metric has samples in either file");
            worse = worse || ab::any_worse(cs);
            md += "\n### arm " + (b == c ? b : b + " → " + c) + "\n\n" + ab::markdown_table(cs, "base", "candidate", o->compare);
        }
        md += worse ? "\n**Regression**: the candidate is significantly worse on at least one metric.\n"
                    : "\nNo significant regression.\n";
        std::printf("%s", md.c_str());
        if (!o->markdown.empty()) {
            append_file(o->markdown, md);
        }
        return worse ? 1 : 0;
    }};
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
        const std::filesystem::path out =
            o->out.empty() ? std::filesystem::absolute(o->results).parent_path() : std::filesystem::path(o->out);
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
