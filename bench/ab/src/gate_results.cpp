// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/gate_results.hpp"

#include <libalglib/specialfunctions.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "memhp/ab/metrics.hpp"
#include "memhp/ab/report.hpp"
#include "memhp/ab/results.hpp"
#include "memhp/ab/stats.hpp"
#include "memhp/files.hpp"

namespace memhp::ab {

using nlohmann::json;

namespace {

// Typed look-ups that never throw on a hostile file: a wrong type reads as
// absent.
bool flag(const json& o, const char* key) {
    if (!o.is_object()) return false;
    const auto it = o.find(key);
    return it != o.end() && it->is_boolean() && it->get<bool>();
}

std::optional<double> number(const json& o, const char* key) {
    if (!o.is_object()) return std::nullopt;
    const auto it = o.find(key);
    if (it == o.end() || !it->is_number()) return std::nullopt;
    const double v = it->get<double>();
    return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

int integer(const json& o, const char* key, int fallback) {
    if (!o.is_object()) return fallback;
    const auto it = o.find(key);
    if (it == o.end() || !it->is_number_integer()) return fallback;
    const auto v = it->get<long long>();
    return v < 0 || v > 1000000 ? fallback : static_cast<int>(v);
}

std::string text(const json& o, const char* key) {
    if (!o.is_object()) return {};
    const auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& arm_of(const json& results, const std::string& name, const char* which) {
    if (results.is_object() && results.contains("arms") && results["arms"].is_array())
        for (const auto& a : results["arms"])
            if (a.is_object() && a.contains("name") && a["name"] == name && a.contains("cycles") &&
                a["cycles"].is_array())
                return a;
    throw BadResults(std::string(which) + " arm '" + name + "' is not in the results");
}

// Why a run cannot be gated, or empty.
std::string run_failure(const json& results, const json& arm) {
    const std::string status = text(results, "status");
    if (status != "complete")
        return "the run's status is '" + (status.empty() ? "missing" : status) + "', not complete";
    const std::string name = text(arm, "name");
    if (!text(arm, "error").empty()) return "arm '" + name + "' failed: " + text(arm, "error");
    int bad = 0, good = 0;
    for (const auto& c : arm["cycles"]) (flag(c, "ok") ? good : bad)++;
    if (bad) return "arm '" + name + "': " + std::to_string(bad) + " cycle(s) failed";
    if (!good) return "arm '" + name + "' has no cycles";
    return {};
}

// Why a run's records cannot be trusted for a clean verdict (its tracer
// lost events: dropped, orphaned, aged out), or empty. The run completed, so
// this is Inconclusive, not RunFailed: a regression may hide in what was lost.
std::string lost_events(const json& arm) {
    const auto& g = arm.is_object() && arm.contains("guest") ? arm["guest"] : json();
    const std::string lost = trace_losses_text(g);
    return lost.empty() ? lost : "arm '" + text(arm, "name") + "': " + lost;
}

GateResult inconclusive(const std::string& why) {
    GateResult r;
    r.status = GateStatus::Inconclusive;
    r.reason = why + "; no verdict on incomplete records (docs/ab-json.md)";
    return r;
}

void add_samples(const json& arm, int boot_offset, std::map<std::string, std::vector<GateSample>>& by_metric,
                 std::vector<GateSample>* reference, int reference_round) {
    for (const auto& c : arm["cycles"]) {
        if (!flag(c, "ok")) continue;
        const int boot = boot_offset + integer(c, "boot", 1);
        const int round = integer(c, "round", 0);
        if (c.contains("metrics") && c["metrics"].is_object())
            for (const auto& d : metric_defs())
                if (const auto v = number(c["metrics"], d.name.c_str())) by_metric[d.name].push_back({*v, boot, round});
        if (reference)
            if (const auto v = number(c, "reference_s"))
                reference->push_back({*v, boot, reference_round < 0 ? round : reference_round});
    }
}

std::vector<GateMetricInput> inputs(const std::map<std::string, std::vector<GateSample>>& base,
                                    const std::map<std::string, std::vector<GateSample>>& cand) {
    // With probes=off in an arm there are no probe metrics to compare: the
    // host's wall times of the phases decide instead.
    static const std::vector<std::string> wall = {"wall_add_s", "wall_online_s", "wall_offline_s", "wall_remove_s"};
    const bool probed = base.count("probe_add_s") && cand.count("probe_add_s");
    const auto& primary = probed ? default_primary_metrics() : wall;
    std::vector<GateMetricInput> out;
    for (const auto& d : metric_defs()) {
        const auto b = base.find(d.name), c = cand.find(d.name);
        if (b == base.end() || c == cand.end()) continue;
        GateMetricInput m;
        m.name = d.name;
        m.better = d.better;
        m.primary = std::find(primary.begin(), primary.end(), d.name) != primary.end();
        m.timing = d.unit == "s";
        m.base = b->second;
        m.cand = c->second;
        out.push_back(std::move(m));
    }
    return out;
}

GateResult failed(const std::string& why) {
    GateResult r;
    r.status = GateStatus::RunFailed;
    r.reason = why;
    return r;
}

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

}  // namespace

GateResult gate_run(const json& results, const std::string& base_arm, const std::string& cand_arm,
                    const GateOptions& opts) {
    const json& a = arm_of(results, base_arm, "base");
    const json& b = arm_of(results, cand_arm, "candidate");
    for (const json* arm : {&a, &b})
        if (auto why = run_failure(results, *arm); !why.empty()) return failed(why);
    for (const json* arm : {&a, &b})
        if (auto why = lost_events(*arm); !why.empty()) return inconclusive(why);
    std::map<std::string, std::vector<GateSample>> sa, sb;
    std::vector<GateSample> reference;
    add_samples(a, 0, sa, &reference, -1);
    add_samples(b, 0, sb, &reference, -1);
    return gate(inputs(sa, sb), opts, reference, "the guests' reference workload, first half of the rounds vs second");
}

GateResult gate_runs(const json& base, const json& cand, const std::string& base_arm, const std::string& cand_arm,
                     const GateOptions& opts) {
    const json& a = arm_of(base, base_arm, "base");
    const json& b = arm_of(cand, cand_arm, "candidate");
    if (auto why = run_failure(base, a); !why.empty()) return failed("base run: " + why);
    if (auto why = run_failure(cand, b); !why.empty()) return failed("candidate run: " + why);
    if (auto why = lost_events(a); !why.empty()) return inconclusive("base run: " + why);
    if (auto why = lost_events(b); !why.empty()) return inconclusive("candidate run: " + why);
    std::map<std::string, std::vector<GateSample>> sa, sb;
    std::vector<GateSample> reference;
    // The candidate's boots are other guests than the base's; the reference
    // splits by run (round 0: base, 1: candidate).
    add_samples(a, 0, sa, &reference, 0);
    add_samples(b, 1000000, sb, &reference, 1);
    auto r = gate(inputs(sa, sb), opts, reference, "the reference workload, base run vs candidate run");
    r.reason = "two runs compared, not two arms of one run (host load between runs counts as an effect): " + r.reason;
    return r;
}

void SpreadAccumulator::add(const json& results) {
    if (!results.is_object() || !results.contains("arms") || !results["arms"].is_array()) return;
    for (const auto& arm : results["arms"]) {
        if (!arm.is_object() || !arm.contains("cycles") || !arm["cycles"].is_array()) continue;
        for (const auto& metric : default_primary_metrics()) {
            std::map<int, std::vector<double>> by_boot;  // log values
            for (const auto& c : arm["cycles"]) {
                if (!flag(c, "ok") || !c.contains("metrics")) continue;
                const auto v = number(c["metrics"], metric.c_str());
                if (v && *v > 0) by_boot[integer(c, "boot", 1)].push_back(std::log(*v));
            }
            if (by_boot.size() < 2) continue;
            auto& s = sums_[metric];
            std::vector<double> medians;
            for (auto& [boot, logs] : by_boot) {
                medians.push_back(summarize(logs).median);
                double mean = 0;
                for (double x : logs) mean += x;
                mean /= static_cast<double>(logs.size());
                for (double x : logs) s.cycle_sq += (x - mean) * (x - mean);
                s.cycle_dof += static_cast<int>(logs.size()) - 1;
                s.cycles += static_cast<int>(logs.size());
            }
            double mean = 0;
            for (double m : medians) mean += m;
            mean /= static_cast<double>(medians.size());
            for (double m : medians) s.boot_sq += (m - mean) * (m - mean);
            s.boot_dof += static_cast<int>(medians.size()) - 1;
            s.boot_n += static_cast<int>(medians.size());
        }
    }
}

std::vector<MetricSpread> SpreadAccumulator::spreads() const {
    std::vector<MetricSpread> out;
    for (const auto& metric : default_primary_metrics()) {
        const auto it = sums_.find(metric);
        if (it == sums_.end() || it->second.boot_dof < 1) continue;
        const auto& s = it->second;
        MetricSpread m;
        m.metric = metric;
        m.boot_sd = std::sqrt(s.boot_sq / s.boot_dof);
        m.cycle_sd = s.cycle_dof > 0 ? std::sqrt(s.cycle_sq / s.cycle_dof) : 0;
        m.boot_medians = s.boot_n;
        m.cycles_per_boot = std::max(1, static_cast<int>(std::lround(static_cast<double>(s.cycles) / s.boot_n)));
        out.push_back(m);
    }
    return out;
}

namespace {
// Variance of one boot's median (log scale) at `cycles` cycles per boot.
double boot_median_variance(const MetricSpread& s, int cycles) {
    const double sampling = 1.25 * s.cycle_sd;  // a median's noise, ~1.25 sigma / sqrt(n) for near-normal data
    const double at_calibration = sampling * sampling / std::max(1, s.cycles_per_boot);
    const double boot_component = std::max(0.0, s.boot_sd * s.boot_sd - at_calibration);
    return boot_component + sampling * sampling / std::max(1, cycles);
}

// The effect on the log scale the gate detects with `power`.
double detectable_log_effect(const MetricSpread& s, int boots, int cycles, double alpha, int metrics, double power) {
    const int n = std::max(2, boots);
    const auto df = static_cast<alglib::ae_int_t>(2 * n - 2);
    const double a = std::clamp(alpha / std::max(1, metrics), 1e-9, 0.49);
    const double q = alglib::invstudenttdistribution(df, 1 - a / 2) +
                     alglib::invstudenttdistribution(df, std::clamp(power, 0.5, 0.999999));
    return q * std::sqrt(2 * boot_median_variance(s, cycles) / n);
}
}  // namespace

double detectable_ratio(const MetricSpread& s, int boots, int cycles_per_boot, double alpha, int metrics,
                        double power) {
    return std::exp(detectable_log_effect(s, boots, cycles_per_boot, alpha, metrics, power));
}

std::optional<int> boots_needed(const MetricSpread& s, double ratio, int cycles_per_boot, double alpha, int metrics,
                                double power, int max_boots) {
    if (!(ratio > 0) || ratio == 1) return std::nullopt;
    const double effect = std::fabs(std::log(ratio));
    for (int n = 2; n <= max_boots; ++n)
        if (detectable_log_effect(s, n, cycles_per_boot, alpha, metrics, power) <= effect) return n;
    return std::nullopt;
}

json to_json(const Calibration& c) {
    json j = {{"schema", "memhp.calibration/1"},
              {"date", c.date},
              {"host", c.host},
              {"runs", c.runs},
              {"false_alarms", c.false_alarms},
              {"inconclusive", c.inconclusive},
              {"boots", c.boots},
              {"cycles", c.cycles},
              {"kernel", c.kernel}};
    json spreads = json::array();
    for (const auto& s : c.spreads)
        spreads.push_back({{"metric", s.metric},
                           {"boot_sd", s.boot_sd},
                           {"cycle_sd", s.cycle_sd},
                           {"boot_medians", s.boot_medians},
                           {"cycles_per_boot", s.cycles_per_boot}});
    j["spreads"] = spreads;
    return j;
}

std::optional<Calibration> load_calibration(const std::filesystem::path& path) {
    const auto raw = try_read_file(path);
    if (!raw) return std::nullopt;
    if (raw->size() > 65536) throw BadResults(path.string() + ": a calibration file is never this large");
    const json j = json::parse(*raw, nullptr, false);
    if (j.is_discarded() || !j.is_object() || text(j, "schema") != "memhp.calibration/1")
        throw BadResults(path.string() + ": not a memhp calibration file; run memhp ab --aa again to rewrite it");
    Calibration c;
    c.date = text(j, "date");
    c.host = text(j, "host");
    c.kernel = text(j, "kernel");
    c.runs = integer(j, "runs", -1);
    c.false_alarms = integer(j, "false_alarms", -1);
    c.inconclusive = integer(j, "inconclusive", -1);
    c.boots = integer(j, "boots", 0);
    c.cycles = integer(j, "cycles", 0);
    if (j.contains("spreads") && j["spreads"].is_array() && j["spreads"].size() <= 64)
        for (const auto& e : j["spreads"]) {
            MetricSpread s;
            s.metric = text(e, "metric");
            const auto boot_sd = number(e, "boot_sd"), cycle_sd = number(e, "cycle_sd");
            s.boot_medians = integer(e, "boot_medians", 0);
            s.cycles_per_boot = integer(e, "cycles_per_boot", 0);
            if (!find_metric(s.metric) || !boot_sd || !cycle_sd || *boot_sd < 0 || *cycle_sd < 0 || *boot_sd > 100 ||
                *cycle_sd > 100 || s.boot_medians < 2 || s.cycles_per_boot < 1)
                throw BadResults(path.string() + ": a malformed spread entry; run memhp ab --aa again to rewrite it");
            s.boot_sd = *boot_sd;
            s.cycle_sd = *cycle_sd;
            c.spreads.push_back(s);
        }
    if (c.runs < 1 || c.false_alarms < 0 || c.inconclusive < 0 || c.false_alarms + c.inconclusive > c.runs)
        throw BadResults(path.string() + ": inconsistent run counts; run memhp ab --aa again to rewrite it");
    return c;
}

std::filesystem::path default_calibration_path() { return cache_dir() / "calibration.json"; }

int Calibration::tests_corrected() { return static_cast<int>(default_primary_metrics().size()); }

std::string power_sentence(const Calibration& c, const GateOptions& opts) {
    if (c.spreads.empty() || c.boots < 2) return {};
    const int m = Calibration::tests_corrected();
    const int per_boot = c.cycles_per_boot();
    std::ostringstream s;
    s << "Power at those settings: the smallest change the gate catches in 90 % of runs is";
    bool first = true;
    for (const auto& sp : c.spreads) {
        if (sp.boot_sd <= 0) continue;  // a count that never moves: any change is caught
        s << (first ? " " : ", ") << sp.metric << " "
          << fmt("%+.0f", 100 * (detectable_ratio(sp, c.boots, per_boot, opts.alpha, m) - 1)) << " %";
        first = false;
    }
    if (first) return {};
    s << " (boot medians' spread from the A/A; `memhp ab --aa` prints the boots a given change needs).";
    return s.str();
}

std::string gate_markdown(const GateResult& r, const std::string& base_label, const std::string& cand_label,
                          const GateOptions& opts, const std::optional<Calibration>& calibration) {
    std::ostringstream md;
    md << "\n## Gate: " << gate_status_word(r.status) << " (exit " << static_cast<int>(r.status) << ")\n\n"
       << r.reason << ".\n\n";
    if (!r.metrics.empty()) {
        md << "`" << cand_label << "` against `" << base_label
           << "`, one median per boot; ratio = candidate / base with its " << fmt("%.0f", (1 - 2 * opts.alpha) * 100)
           << " % interval; p: Welch's t on the boot medians (log scale for positive values); "
              "p(Holm): adjusted across the primary metrics.\n\n"
           << "| metric | verdict | boots | ratio | interval | p | p(Holm) | note "
              "|\n|---|---|---|---|---|---|---|---|\n";
        for (const auto& v : r.metrics) {
            std::string note = v.note;
            if (v.verdict == GateVerdict::Inconclusive && v.note.empty() && v.boots_needed)
                note = "about " + std::to_string(v.boots_needed) + " boots per arm would decide";
            md << "| " << (v.primary ? "**" + v.name + "**" : v.name) << " | " << gate_verdict_word(v.verdict) << " | "
               << v.boots_base << "+" << v.boots_cand << " | " << fmt("%.3f", v.ratio) << " | "
               << (std::isfinite(v.ratio_hi) ? fmt("%.3f", v.ratio_lo) + "–" + fmt("%.3f", v.ratio_hi)
                                             : std::string("–"))
               << " | " << fmt("%.3g", v.p) << " | "
               << (v.primary && v.better == Better::Lower ? fmt("%.3g", v.p_adjusted) : std::string("–")) << " | "
               << note << " |\n";
        }
    }
    md << "\nError control: primary metrics (bold) form one family at α = " << fmt("%.3g", opts.alpha)
       << " (Holm); a change smaller than " << fmt("%.0f", opts.floor * 100)
       << " % is \"same\"; the others are reported with their raw p and do not decide the status.";
    if (r.drift.checked)
        md << " Drift: " << r.drift.reference << " changed by " << fmt("%+.1f", r.drift.change * 100) << " %.";
    else
        md << " Drift: not checked (no reference workload in these results).";
    md << "\n\n";
    if (calibration)
        md << "Calibration: an A/A on " << calibration->host << " (" << calibration->date << ", kernel "
           << calibration->kernel << ", " << calibration->boots << " boots × " << calibration->cycles
           << " cycles) gave " << calibration->false_alarms << " false alarm(s) in " << calibration->runs << " runs ("
           << fmt("%.1f", 100.0 * calibration->false_alarms / calibration->runs) << " %), " << calibration->inconclusive
           << " inconclusive.\n"
           << power_sentence(*calibration, opts) << "\n";
    else
        md << "Calibration: none on this machine; `memhp ab --aa 20` measures the false-alarm rate.\n";
    return md.str();
}

}  // namespace memhp::ab
