// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/peer.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <vector>

#include "memhp/ab/report.hpp"
#include "memhp/ab/stats.hpp"

namespace memhp::ab {

using json = nlohmann::json;

namespace {

// memhp phase -> the kernel function whose entry and return bound it.
const std::vector<std::pair<std::string, std::string>> kPeerPhases{{"add", "add_memory_resource"},
                                                                   {"online", "memory_subsys_online"},
                                                                   {"offline", "memory_subsys_offline"},
                                                                   {"remove", "try_remove_memory"}};

std::string make_program() {
    std::string p = "// memhp ab --peer bpftrace: memhp's add/online/offline/remove phases, timed by bpftrace.\n";
    for (std::size_t i = 0; i < kPeerPhases.size(); ++i) {
        const auto& [phase, fn] = kPeerPhases[i];
        const std::string key = "@t0[tid, " + std::to_string(i) + "]";
        p += "kfunc:" + fn + " { " + key + " = nsecs; }\n";
        p += "kretfunc:" + fn + " /" + key + "/ { printf(\"{\\\"phase\\\":\\\"" + phase +
             "\\\",\\\"duration_ns\\\":%llu}\\n\", nsecs - " + key + "); delete(" + key + "); }\n";
    }
    return p;
}

// Per phase, the sum of the (inclusive) durations of a cycle's records and their number.
std::map<std::string, std::pair<double, int>> per_phase(const json& ops) {
    std::map<std::string, std::pair<double, int>> out;
    for (const auto& o : ops) {
        auto& [ns, n] = out[o.value("phase", std::string())];
        // bpftrace times the function from entry to return, nested calls
        // (an add's auto-online) included: memhp's inclusive time.
        ns += o.value("inclusive_ns", o.value("duration_ns", 0.0));
        ++n;
    }
    return out;
}

}  // namespace

const std::string& bpftrace_peer_program() {
    static const std::string program = make_program();
    return program;
}

lab::TracerCommand bpftrace_peer_command(const std::string& bpftrace) {
    // "Attaching 8 probes..." comes before the attaches, then one BPF link
    // per kfunc/kretfunc; -B line flushes each record as it is printed.
    return {"bpftrace",
            {bpftrace, "-B", "line", "-e", bpftrace_peer_program()},
            "Attaching ",
            2 * static_cast<int>(kPeerPhases.size())};
}

json peer_agreement(const json& arm) {
    json phases = json::object();
    for (const auto& [phase, fn] : kPeerPhases) {
        std::vector<double> memhp, peer, rel;
        int unmatched = 0;
        for (const auto& c : arm.value("cycles", json::array())) {
            if (!c.contains("peer_ops")) continue;
            const auto m = per_phase(c.value("ops", json::array()));
            const auto b = per_phase(c["peer_ops"]);
            const auto mi = m.find(phase);
            const auto bi = b.find(phase);
            const int mn = mi == m.end() ? 0 : mi->second.second, bn = bi == b.end() ? 0 : bi->second.second;
            if (mn == 0 && bn == 0) continue;
            if (mn != bn) {
                ++unmatched;
                continue;
            }
            memhp.push_back(mi->second.first / 1e9);
            peer.push_back(bi->second.first / 1e9);
            if (memhp.back() > 0) rel.push_back(std::fabs(peer.back() - memhp.back()) / memhp.back());
        }
        if (memhp.empty() && !unmatched) continue;
        json p{{"function", fn}, {"cycles", memhp.size()}, {"unmatched", unmatched}};
        if (!memhp.empty()) {
            const auto ms = summarize(memhp), bs = summarize(peer);
            p["memhp_median_s"] = ms.median;
            p["bpftrace_median_s"] = bs.median;
            p["ratio"] = ms.median > 0 ? bs.median / ms.median : 0.0;
        }
        if (!rel.empty()) {
            const auto rs = summarize(rel);
            p["median_rel_diff"] = rs.median;
            p["max_rel_diff"] = rs.max;
        }
        phases[phase] = p;
    }
    return phases;
}

std::string peer_markdown(const json& results) {
    std::ostringstream md;
    bool any = false;
    for (const auto& a : results["arms"]) {
        const auto g = a.value("guest", json::object());
        if (!g.is_object() || !g.contains("peer")) continue;
        if (!any) {
            md << "\n### Peer check: memhp against bpftrace in the same guest and cycles\n\n"
               << "| arm | phase | function | cycles | memhp median | bpftrace median | bpftrace/memhp | per-cycle "
                  "difference (median, max) |\n"
               << "|---|---|---|---:|---:|---:|---:|---:|\n";
            any = true;
        }
        const json phases = g["peer"].value("phases", json::object());
        for (const auto& [phase, fn] : kPeerPhases) {
            if (!phases.contains(phase)) continue;
            const auto& p = phases[phase];
            md << "| " << a["name"].get<std::string>() << " | " << phase << " | `" << p.value("function", std::string())
               << "` | " << p.value("cycles", 0);
            if (p.value("unmatched", 0)) md << " (" << p.value("unmatched", 0) << " unmatched)";
            if (p.contains("memhp_median_s")) {
                char ratio[32], diff[64];
                std::snprintf(ratio, sizeof ratio, "%.2f×", p.value("ratio", 0.0));
                std::snprintf(diff, sizeof diff, "%.1f %%, %.1f %%", 100 * p.value("median_rel_diff", 0.0),
                              100 * p.value("max_rel_diff", 0.0));
                md << " | " << format_value(p["memhp_median_s"], "s") << " | "
                   << format_value(p["bpftrace_median_s"], "s") << " | " << ratio << " | " << diff << " |\n";
            } else {
                md << " | – | – | – | – |\n";
            }
        }
    }
    if (!any) return {};
    md << "\nTime from spawn to every probe attached, in the guest:\n\n| arm | memhp | bpftrace | bpftrace/memhp "
          "|\n|---|---:|---:|---:|\n";
    for (const auto& a : results["arms"]) {
        const auto g = a.value("guest", json::object());
        if (!g.is_object() || !g.contains("peer")) continue;
        const double m = g.value("attach_s", 0.0), b = g["peer"].value("attach_s", 0.0);
        char ratio[32];
        std::snprintf(ratio, sizeof ratio, "%.1f×", m > 0 ? b / m : 0.0);
        md << "| " << a["name"].get<std::string>() << " | " << format_value(m, "s") << " | " << format_value(b, "s")
           << " | " << ratio << " |\n";
    }
    md << "\nmemhp times each phase with fentry/fexit (or kprobes) on the same functions; the difference is the two "
          "tools' own probe overhead plus emulation noise.\n";
    return md.str();
}

}  // namespace memhp::ab
