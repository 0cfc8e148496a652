// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/report.hpp"
#include "memhp/ab/peer.hpp"
#include "memhp/ab/scenario.hpp"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>
#include <regex>
#include <sstream>

#include "memhp/ab/curve.hpp"
#include "memhp/ab/device.hpp"
#include "memhp/files.hpp"

namespace memhp::ab {

using nlohmann::json;

const char* verdict_word(Verdict v) {
    switch (v) {
        case Verdict::Same: return "same";
        case Verdict::Better: return "better";
        case Verdict::Worse: return "**worse**";
        case Verdict::Differs: return "differs";
        case Verdict::TooFew: return "too few samples";
    }
    return "?";
}

std::map<std::string, std::vector<double>> arm_samples(const ArmRecord& arm) {
    std::map<std::string, std::vector<double>> out;
    for (const auto& c : arm.cycles) {
        if (!c.ok) continue;
        for (const auto& [name, v] : c.metrics) out[name].push_back(v);
    }
    return out;
}

std::string md_cell(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '|')
            out += "\\|";
        else if (c == '\n' || c == '\r' || c == '\t')
            out += ' ';
        else if (u < 0x20 || u == 0x7f)
            out += '?';
        else
            out += c;
    }
    return out;
}

namespace {

constexpr std::size_t kMinSamples = 5;  // ALGLIB's U test needs 5 per side

double ratio_of(double base, double cand) {
    if (base == 0) return cand == 0 ? 1 : std::numeric_limits<double>::infinity();
    return cand / base;
}

Verdict judge(const MetricDef& d, const Summary& b, const Summary& c, double ratio, double p, const CompareOptions& o) {
    if (b.n < kMinSamples || c.n < kMinSamples) return Verdict::TooFew;
    if (p >= o.alpha || std::fabs(ratio - 1) <= o.threshold) return Verdict::Same;
    if (d.better == Better::Neither) return Verdict::Differs;
    return ratio > 1 ? Verdict::Worse : Verdict::Better;
}

std::string ratio_text(double r) {
    if (std::isinf(r)) return "∞";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", r);
    return buf;
}

}  // namespace

std::vector<Comparison> compare_arms(const json& base, const json& cand, const CompareOptions& opts) {
    return compare_arms(arm_from_json(base, "base"), arm_from_json(cand, "candidate"), opts);
}

std::vector<Comparison> compare_arms(const ArmRecord& base, const ArmRecord& cand, const CompareOptions& opts) {
    const auto bs = arm_samples(base), cs = arm_samples(cand);
    std::vector<Comparison> out;
    for (const auto& def : metric_defs()) {
        if (!opts.metrics.empty() &&
            std::find(opts.metrics.begin(), opts.metrics.end(), def.name) == opts.metrics.end())
            continue;
        auto bi = bs.find(def.name);
        auto ci = cs.find(def.name);
        if (bi == bs.end() && ci == cs.end()) continue;
        static const std::vector<double> none;
        const auto& b = bi == bs.end() ? none : bi->second;
        const auto& c = ci == cs.end() ? none : ci->second;
        Comparison cmp;
        cmp.def = &def;
        cmp.base = summarize(b);
        cmp.cand = summarize(c);
        cmp.ratio = ratio_of(cmp.base.median, cmp.cand.median);
        cmp.p = mann_whitney_p(b, c);
        cmp.verdict = judge(def, cmp.base, cmp.cand, cmp.ratio, cmp.p, opts);
        out.push_back(cmp);
    }
    return out;
}

bool any_worse(const std::vector<Comparison>& cs) {
    for (const auto& c : cs)
        if (c.verdict == Verdict::Worse) return true;
    return false;
}

std::string format_value(double v, const std::string& unit) {
    char buf[48];
    if (unit == "s") {
        const double a = std::fabs(v);
        if (a == 0) return "0";
        if (a >= 1)
            std::snprintf(buf, sizeof buf, "%.3f s", v);
        else if (a >= 1e-3)
            std::snprintf(buf, sizeof buf, "%.3f ms", v * 1e3);
        else
            std::snprintf(buf, sizeof buf, "%.1f µs", v * 1e6);
        return buf;
    }
    if (unit == "bytes") {
        const double a = std::fabs(v);
        if (a >= 1 << 30)
            std::snprintf(buf, sizeof buf, "%.2f GiB", v / (1 << 30));
        else if (a >= 1 << 20)
            std::snprintf(buf, sizeof buf, "%.2f MiB", v / (1 << 20));
        else if (a >= 1 << 10)
            std::snprintf(buf, sizeof buf, "%.1f KiB", v / (1 << 10));
        else
            std::snprintf(buf, sizeof buf, "%.0f B", v);
        return buf;
    }
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

namespace {

std::string cell(const Summary& s, const std::string& unit) {
    if (s.n == 0) return "–";
    if (s.p25 == s.p75) return format_value(s.median, unit);
    return format_value(s.median, unit) + " (" + format_value(s.p25, unit) + "–" + format_value(s.p75, unit) + ")";
}

}  // namespace

std::string markdown_table(const std::vector<Comparison>& cs, const std::string& base_label,
                           const std::string& cand_label, const CompareOptions& opts) {
    std::ostringstream md;
    md << "| metric | " << base_label << " | " << cand_label << " | ratio | p | verdict |\n";
    md << "|---|---:|---:|---:|---:|---|\n";
    for (const auto& c : cs) {
        char p[16];
        // ALGLIB's U-test tables stop at 0.0002 and report at most 0.5.
        if (c.p >= 0.5)
            std::snprintf(p, sizeof p, "≥0.5");
        else if (c.p <= 0.0002)
            std::snprintf(p, sizeof p, "≤0.0002");
        else
            std::snprintf(p, sizeof p, "%.4f", c.p);
        md << "| " << c.def->name << " | " << cell(c.base, c.def->unit) << " | " << cell(c.cand, c.def->unit) << " | "
           << ratio_text(c.ratio) << " | " << p << " | " << verdict_word(c.verdict) << " |\n";
    }
    char foot[200];
    std::snprintf(foot, sizeof foot,
                  "\nmedian (p25–p75) over good cycles; ratio = %s / %s; p: two-sided Mann-Whitney U; a difference "
                  "counts when p < %.2g and the ratio moves more than %.0f%%.\n",
                  cand_label.c_str(), base_label.c_str(), opts.alpha, opts.threshold * 100);
    md << foot;
    return md.str();
}

namespace {

// A list item that may span lines (console tails): continuation lines indented.
std::string md_item(std::string_view s) {
    std::string out;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\n')
            out += "\n  ";
        else if (c == '\t')
            out += ' ';
        else if (u < 0x20 || u == 0x7f)
            out += '?';
        else
            out += c;
    }
    return out;
}

// Median of one metric over an arm's good cycles; nullopt when absent.
std::optional<double> median_of(const ArmRecord& arm, const std::string& metric) {
    auto s = arm_samples(arm);
    auto it = s.find(metric);
    if (it == s.end() || it->second.empty()) return std::nullopt;
    return summarize(it->second).median;
}

std::string claims_markdown(const Results& results) {
    std::ostringstream md;
    const auto& o = results.options;
    const double per = static_cast<double>(o.dimm_bytes) * static_cast<double>(o.dimms);
    const double blocks128 = per / double(128 << 20);
    bool any = false;
    std::ostringstream rows;
    // 1. free memory consumed per 128 MiB, 2. locality on the target node.
    for (const auto& a : results.arms) {
        auto free = median_of(a, "free_consumed_bytes");
        auto remote = median_of(a, "memmap_remote_bytes");
        auto alt = median_of(a, "memmap_altmap_bytes");
        auto buddy = median_of(a, "memmap_page_allocator_bytes");
        if (!free || blocks128 <= 0) continue;
        any = true;
        const double memmap = alt.value_or(0) + buddy.value_or(0);
        std::string where = memmap == 0               ? "–"
                            : remote.value_or(0) == 0 ? "local (on the node it serves)"
                            : *remote >= memmap       ? "remote (on another node)"
                                                      : "partly remote";
        rows << "| " << a.name << " | " << format_value(*free / blocks128, "bytes") << " | "
             << format_value(alt.value_or(0) / blocks128, "bytes") << " altmap, "
             << format_value(buddy.value_or(0) / blocks128, "bytes") << " page allocator | " << where << " |\n";
    }
    if (any) {
        md << "\n### What hot-add costs (medians per 128 MiB hot-added)\n\n"
           << "| arm | free memory consumed | memmap source | memmap locality (node " << o.node
           << ") |\n|---|---:|---|---|\n"
           << rows.str();
        for (const auto& a : results.arms)
            if (!device_memmap_note(parse_device(a.device)).empty())
                md << "\n"
                   << a.name << " hot-adds " << a.device << ": " << device_memmap_note(parse_device(a.device))
                   << " (asked: memmap_on_memory=" << md_cell(a.guest ? a.guest->memmap_on_memory : std::string("?"))
                   << ").\n";
    }
    // 3. the multi-block fallback check.
    if (!results.fallback_check.empty()) {
        md << "\n### A " << format_value(results.fallback_check[0].dimm_bytes, "bytes")
           << " DIMM (several memory blocks) with memmap_on_memory=1\n\n"
           << "| guest | kernel | altmap | page allocator | memhp's verdict |\n|---|---|---:|---:|---|\n";
        for (const auto& f : results.fallback_check) {
            md << "| " << md_cell(f.guest.empty() ? "?" : f.guest) << " | "
               << md_cell(f.release.empty() ? "?" : f.release) << " | ";
            if (f.error) {
                md << "– | – | failed: " << md_cell(*f.error) << " |\n";
                continue;
            }
            md << format_value(f.altmap_bytes, "bytes") << " | " << format_value(f.page_allocator_bytes, "bytes")
               << " | "
               << (f.unused ? "memmap_on_memory requested but unused: " + md_cell(f.reason)
                            : std::string("memmap on the added memory"))
               << " |\n";
        }
    }
    return md.str();
}

}  // namespace

// "attached 21 of 23 probes in 3981 ms; vmemmap populate inferred ..." -> "21/23, populate inferred"
std::string probes_cell(const std::string& line) {
    std::smatch m;
    if (!std::regex_search(line, m, std::regex("attached (\\d+) of (\\d+) probes"))) return "–";
    std::string cell = m[1].str() + "/" + m[2].str();
    if (line.find("populate inferred") != std::string::npos)
        cell += ", populate inferred";
    else if (line.find("populate timed") != std::string::npos)
        cell += ", populate direct";
    return cell;
}

// Who onlined the arm's memory: "kernel (online_movable)" or "lab". Results
// written before --online existed ran with the lab onlining.
std::string onlining_cell(const ArmRecord& arm, const GuestRecord& guest) {
    std::string policy = guest.auto_online_blocks;
    if (!std::regex_match(policy, std::regex("[a-z_]{1,20}"))) policy.clear();  // outside bytes go into markdown
    if (policy.empty()) return arm.online_requested == "auto" ? "kernel" : "lab";
    return policy == "offline" ? "lab" : "kernel (" + policy + ")";
}

std::string scale_markdown(const Results& results) {
    if (results.options.mode != "scale") return {};
    std::ostringstream md;
    md << "\n### Scale ramp: per-block cost as hot-plugged memory accumulates\n\n"
       << "| arm | steps | add, first 8 | add, last 8 | growth | online, first 8 | online, last 8 | growth |\n"
       << "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& a : results.arms) {
        std::vector<double> add, online;
        for (const auto& s : a.scale)
            if (s.ok) {
                add.push_back(s.probe_add_s);
                online.push_back(s.probe_online_s);
            }
        if (add.size() < 16) continue;
        auto med = [](const std::vector<double>& v, bool head) {
            return summarize(head ? std::vector<double>(v.begin(), v.begin() + 8)
                                  : std::vector<double>(v.end() - 8, v.end()))
                .median;
        };
        auto row = [&](const std::vector<double>& v) {
            const double h = med(v, true), t = med(v, false);
            char g[16];
            std::snprintf(g, sizeof g, "%.2f×", h > 0 ? t / h : 0);
            return format_value(h, "s") + " | " + format_value(t, "s") + " | " + g;
        };
        md << "| " << a.name << " | " << add.size() << " | " << row(add) << " | " << row(online) << " |\n";
    }
    md << "\nmedians of the probes' add_memory_resource() and memory_subsys_online() durations over the first and last "
          "8 steps.\n";
    // The fitted growth: cost per block ~ (blocks present)^exponent, 95 % interval.
    std::ostringstream fits;
    for (const auto& a : results.doc["arms"]) {
        const auto an = scale_analysis(a, results.options.scale_step_bytes);
        for (const char* phase : {"add", "online"})
            if (an.contains(phase) && an[phase].contains("exponent"))
                fits << "- " << md_cell(a["name"].get<std::string>()) << ": "
                     << an[phase]["sentence"].get<std::string>() << "\n";
    }
    if (!fits.str().empty())
        md << "\nGrowth per block, fitted as cost ~ present^k (log-log least squares, 95 % interval; k = 0 is flat, 1 "
              "is linear in the memory already present):\n\n"
           << fits.str();
    // End to end (virtio-mem): from the QMP request to the step online, beside the kernel's own time.
    std::ostringstream e2e;
    const auto num = [](const json& o, const char* k) {
        return o.is_object() && o.contains(k) && o[k].is_number() ? o[k].get<double>() : -1.0;
    };
    for (const auto& a : results.doc["arms"]) {
        if (!a.is_object() || !a.contains("scale_total") || !a["name"].is_string()) continue;
        const auto& t = a["scale_total"];
        const double plugged = num(t, "plugged_bytes"), host = num(t, "e2e_s"), host_rate = num(t, "e2e_gib_s");
        if (plugged < 0 || host < 0 || host_rate < 0) continue;
        char row[256];
        const double kernel = num(t, "kernel_s"), kernel_rate = num(t, "kernel_gib_s");
        if (kernel >= 0 && kernel_rate >= 0)
            std::snprintf(row, sizeof row, "%.2f s | %.2f GiB/s | %.2f s | %.2f GiB/s | %.0f %%", host, host_rate,
                          kernel, kernel_rate, host > 0 ? (host - kernel) / host * 100 : 0.0);
        else
            std::snprintf(row, sizeof row, "%.2f s | %.2f GiB/s | - | - | -", host, host_rate);
        e2e << "| " << md_cell(a["name"].get<std::string>()) << " | " << format_value(plugged, "bytes") << " | " << row
            << " |\n";
    }
    if (!e2e.str().empty())
        md << "\nEnd to end, host to guest: per step from the QMP request to the step's last block online, summed; "
              "beside "
              "it the kernel's own add + online time (the probes), and the share of the host's time outside the kernel "
              "(QEMU's memory slots, the lab's polling and onlining):\n\n"
              "| arm | plugged | host | host rate | kernel | kernel rate | outside the kernel |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n"
           << e2e.str();
    return md.str();
}

namespace {

// The arms whose tracer lost events, and what that means for their figures.
std::string lost_events_markdown(const Results& results) {
    std::ostringstream lost;
    for (const auto& a : results.arms)
        if (a.guest && !a.guest->trace_losses.empty())
            lost << "- " << a.name << ": " << md_item(a.guest->trace_losses) << "\n";
    if (lost.str().empty()) return {};
    return "\n### Lost events\n\nSome operations or their pages are missing from these arms' records, so their "
           "figures may be short; `memhp compare` and `--gate` give no clean verdict on them (exit 3).\n\n" +
           lost.str();
}

}  // namespace

std::string summary_markdown(const json& results, const CompareOptions& opts) {
    return summary_markdown(results_from_json(results), opts);
}

std::string summary_markdown(const Results& results, const CompareOptions& opts) {
    std::ostringstream md;
    const auto& o = results.options;
    md << "## memhp ab: " << md_cell(results.title) << "\n\n";
    if (o.mode == "scale" && o.scale_device == "virtio-mem")
        md << "Each arm's guest grows one virtio-mem device on node " << o.node << " to "
           << format_value(static_cast<double>(o.scale_bytes), "bytes") << " in "
           << format_value(static_cast<double>(o.scale_step_bytes), "bytes")
           << " steps, each step online before the next; "
           << "steps interleaved.\n\n";
    else if (o.mode == "scale")
        md << "Each arm's guest hot-adds " << format_value(static_cast<double>(o.scale_bytes), "bytes") << " in "
           << format_value(static_cast<double>(o.dimm_bytes), "bytes") << " DIMMs on node " << o.node
           << ", onlining each (" << o.zone << ") before the next; steps interleaved.\n\n";
    else
        md << "Each cycle hot-adds " << o.dimms << " × " << format_value(static_cast<double>(o.dimm_bytes), "bytes")
           << " on node " << o.node << ", onlines it (" << o.zone
           << "), offlines and removes it; arms interleaved over " << o.cycles << " rounds.\n\n";
    md << "| arm | kernel | memmap_on_memory | onlining | boot | probes | " << (o.mode == "scale" ? "steps" : "cycles")
       << " ok | failed |\n|---|---|---|---|---:|---|---:|---:|\n";
    for (const auto& a : results.arms) {
        int ok = 0, bad = 0;
        for (const auto& c : a.cycles) (c.ok ? ok : bad)++;
        for (const auto& c : a.scale) (c.ok ? ok : bad)++;
        const GuestRecord g = a.guest.value_or(GuestRecord{});  // none: the guest never got ready
        char boot[32];
        std::snprintf(boot, sizeof boot, "%.1f s", g.boot_s);
        md << "| " << a.name << " | " << md_cell(g.release.empty() ? a.kernel_spec : g.release) << " | "
           << md_cell(g.memmap_on_memory) << " | " << onlining_cell(a, g) << " | " << boot << " | "
           << md_cell(probes_cell(g.probes)) << " | " << ok << " | " << bad << " |\n";
    }
    const auto& arms = results.arms;
    for (std::size_t i = 1; i < arms.size(); ++i) {
        const auto cs = compare_arms(arms[0], arms[i], opts);
        if (cs.empty()) continue;
        md << "\n### " << arms[i].name << " vs " << arms[0].name << "\n\n"
           << markdown_table(cs, arms[0].name, arms[i].name, opts);
    }
    md << claims_markdown(results);
    md << scale_markdown(results);
    md << scenario_markdown(results.doc);
    md << peer_markdown(results.doc);
    std::ostringstream fails;
    for (const auto& a : arms)
        for (const auto& c : a.cycles)
            for (const auto& p : c.phases)
                if (!p.ok)
                    fails << "- " << a.name << " cycle " << c.index << ": " << md_cell(p.phase)
                          << " failed: " << md_item(p.error) << "\n";
    for (const auto& e : results.errors) fails << "- " << md_item(e) << "\n";
    if (!fails.str().empty()) md << "\n### Failures\n\n" << fails.str();
    md << lost_events_markdown(results);
    if (opts.gate && arms.size() >= 2 && o.mode == "cycles") {
        const auto& base = arms.front().name;
        const auto& cand = arms.back().name;
        md << gate_markdown(gate_run(results.doc, base, cand, opts.gate_opts), base, cand, opts.gate_opts,
                            opts.calibration);
    }
    return md.str();
}

}  // namespace memhp::ab
