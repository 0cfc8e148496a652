// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/gate.hpp"

#include <libalglib/specialfunctions.h>
#include <libalglib/statistics.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "memhp/ab/stats.hpp"

namespace memhp::ab {
namespace {

constexpr std::size_t kMaxBootsNeeded = 1000;

struct Moments {
    double mean = 0, var = 0;
    std::size_t n = 0;
};

Moments moments(const std::vector<double>& v) {
    Moments m;
    m.n = v.size();
    if (v.empty()) return m;
    m.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    if (v.size() > 1) {
        double ss = 0;
        for (double x : v) ss += (x - m.mean) * (x - m.mean);
        m.var = ss / static_cast<double>(v.size() - 1);
    }
    return m;
}

alglib::real_1d_array to_alglib(const std::vector<double>& v) {
    alglib::real_1d_array a;
    a.setcontent(static_cast<alglib::ae_int_t>(v.size()), v.data());
    return a;
}

double median_of(const std::vector<double>& v) { return v.empty() ? 0 : summarize(v).median; }

// The boot-level comparison of one metric, on the log scale when every boot
// median is positive (effects are ratios there) and on the raw scale
// otherwise (byte counts that can be 0).
struct BootTest {
    double p = 1;
    double est = 0, half_width = 0;  // on the test's scale
    double floor_on_scale = 0;
    bool log_scale = true;
    double base_mean_raw = 0;
};

BootTest boot_test(const std::vector<double>& base, const std::vector<double>& cand, const GateOptions& o) {
    BootTest t;
    const auto positive = [](const std::vector<double>& v) {
        return std::all_of(v.begin(), v.end(), [](double x) { return x > 0; });
    };
    t.log_scale = positive(base) && positive(cand);
    std::vector<double> x = base, y = cand;
    if (t.log_scale) {
        for (double& v : x) v = std::log(v);
        for (double& v : y) v = std::log(v);
    }
    const Moments mx = moments(x), my = moments(y);
    t.base_mean_raw = moments(base).mean;
    t.est = my.mean - mx.mean;
    t.floor_on_scale = t.log_scale ? std::log1p(o.floor) : o.floor * std::fabs(t.base_mean_raw);
    const double vx = mx.var / static_cast<double>(mx.n), vy = my.var / static_cast<double>(my.n);
    const double se = std::sqrt(vx + vy);
    if (se == 0 || !std::isfinite(se)) {
        // Every boot of each arm gave the same value: the difference is exact.
        t.p = t.est == 0 ? 1 : 0;
        t.half_width = 0;
        return t;
    }
    double both = 1, left = 1, right = 1;
    alglib::unequalvariancettest(to_alglib(x), static_cast<alglib::ae_int_t>(x.size()), to_alglib(y),
                                 static_cast<alglib::ae_int_t>(y.size()), both, left, right);
    t.p = both;
    // Welch-Satterthwaite degrees of freedom, rounded down (conservative).
    const double den = (mx.n > 1 ? vx * vx / static_cast<double>(mx.n - 1) : 0) +
                       (my.n > 1 ? vy * vy / static_cast<double>(my.n - 1) : 0);
    const double df = den > 0 ? (se * se * se * se) / den : 1;
    const auto k = static_cast<alglib::ae_int_t>(std::max(1.0, std::floor(df)));
    // The (1 - 2 alpha) interval: its ends are the two one-sided tests at
    // alpha, which is what "same within the floor" (equivalence) needs.
    t.half_width = alglib::invstudenttdistribution(k, 1 - std::clamp(o.alpha, 1e-9, 0.49)) * se;
    return t;
}

double to_ratio(const BootTest& t, double v) {
    if (t.log_scale) return std::exp(v);
    if (t.base_mean_raw == 0) return v == 0 ? 1 : std::numeric_limits<double>::infinity();
    return 1 + v / t.base_mean_raw;
}

std::string percent(double rel) {
    char b[32];
    std::snprintf(b, sizeof b, "%+.1f %%", rel * 100);
    return b;
}

}  // namespace

const std::vector<std::string>& default_primary_metrics() {
    static const std::vector<std::string> k = {"probe_add_s",    "probe_online_s",      "probe_offline_s",
                                               "probe_remove_s", "free_consumed_bytes", "memmap_remote_bytes"};
    return k;
}

const char* gate_verdict_word(GateVerdict v) {
    switch (v) {
        case GateVerdict::Better: return "better";
        case GateVerdict::Worse: return "worse";
        case GateVerdict::Same: return "same";
        case GateVerdict::Inconclusive: return "inconclusive";
        case GateVerdict::Differs: return "differs";
    }
    return "?";
}

const char* gate_status_word(GateStatus s) {
    switch (s) {
        case GateStatus::NoRegression: return "no regression";
        case GateStatus::Regression: return "regression";
        case GateStatus::BadInput: return "bad input";
        case GateStatus::Inconclusive: return "inconclusive";
        case GateStatus::RunFailed: return "run failed";
    }
    return "?";
}

std::vector<double> holm_adjust(const std::vector<double>& p) {
    std::vector<std::size_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] < p[b]; });
    std::vector<double> out(p.size(), 1);
    double running = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
        const double adj = std::min(1.0, p[order[i]] * static_cast<double>(order.size() - i));
        running = std::max(running, adj);
        out[order[i]] = running;
    }
    return out;
}

std::vector<double> boot_medians(const std::vector<GateSample>& samples) {
    std::map<int, std::vector<double>> by_boot;
    for (const auto& s : samples) by_boot[s.boot].push_back(s.value);
    std::vector<double> out;
    out.reserve(by_boot.size());
    for (const auto& [boot, values] : by_boot) out.push_back(median_of(values));
    return out;
}

GateResult gate(const std::vector<GateMetricInput>& metrics, const GateOptions& opts,
                const std::vector<GateSample>& reference, const std::string& reference_name) {
    GateResult r;
    std::vector<BootTest> tests;
    std::vector<double> raw_p;
    std::vector<std::size_t> family;  // indices of metrics with a direction
    for (const auto& m : metrics) {
        GateMetricVerdict v;
        v.name = m.name;
        v.better = m.better;
        v.primary = m.primary;
        const auto bb = boot_medians(m.base), bc = boot_medians(m.cand);
        v.boots_base = bb.size();
        v.boots_cand = bc.size();
        BootTest t;
        if (bb.size() >= opts.min_boots && bc.size() >= opts.min_boots) {
            t = boot_test(bb, bc, opts);
            v.p = t.p;
            v.ratio = to_ratio(t, t.est);
            v.ratio_lo = to_ratio(t, t.est - t.half_width);
            v.ratio_hi = to_ratio(t, t.est + t.half_width);
            if (m.better == Better::Lower && m.primary) family.push_back(r.metrics.size());
        } else {
            v.ratio = median_of(bb) > 0 ? median_of(bc) / median_of(bb) : 1;
            v.note = "needs at least " + std::to_string(opts.min_boots) + " boots per arm (has " +
                     std::to_string(bb.size()) + " and " + std::to_string(bc.size()) + ")";
            v.boots_needed = opts.min_boots;
        }
        tests.push_back(t);
        r.metrics.push_back(std::move(v));
    }
    for (std::size_t i : family) raw_p.push_back(r.metrics[i].p);
    const auto adj = holm_adjust(raw_p);
    for (std::size_t k = 0; k < family.size(); ++k) r.metrics[family[k]].p_adjusted = adj[k];

    for (std::size_t i = 0; i < r.metrics.size(); ++i) {
        auto& v = r.metrics[i];
        const auto& t = tests[i];
        if (!v.note.empty()) continue;  // too few boots: stays inconclusive
        if (v.better != Better::Lower || !v.primary) v.p_adjusted = v.p;
        const double rel = v.ratio - 1;
        const bool significant = v.p_adjusted <= opts.alpha;
        const bool within_floor = v.ratio_lo >= 1 - opts.floor && v.ratio_hi <= 1 + opts.floor;
        if (significant && std::fabs(rel) >= opts.floor && v.better == Better::Lower) {
            v.verdict = rel > 0 ? GateVerdict::Worse : GateVerdict::Better;
        } else if (within_floor || (significant && std::fabs(rel) < opts.floor)) {
            v.verdict = GateVerdict::Same;
        } else if (significant && v.better == Better::Neither) {
            v.verdict = GateVerdict::Differs;  // no direction is better: a difference, not a verdict
        } else {
            v.verdict = GateVerdict::Inconclusive;
            // The interval shrinks as 1/sqrt(boots): boots per arm at which it
            // would clear either zero (a difference) or the floor (sameness).
            const double target = std::max(std::fabs(t.est), std::fabs(t.floor_on_scale - std::fabs(t.est)));
            const double n = static_cast<double>(std::max(v.boots_base, v.boots_cand));
            if (target > 0 && t.half_width > 0) {
                const double need = std::ceil(n * (t.half_width / target) * (t.half_width / target));
                v.boots_needed = static_cast<std::size_t>(std::min<double>(kMaxBootsNeeded, std::max(n + 1, need)));
            } else {
                v.boots_needed = static_cast<std::size_t>(n) + 1;
            }
        }
    }

    // Drift: the reference (e.g. a fixed workload's time) from the run's
    // first half of rounds to its second.
    if (!reference.empty()) {
        int lo = reference.front().round, hi = lo;
        for (const auto& s : reference) lo = std::min(lo, s.round), hi = std::max(hi, s.round);
        const double mid = (lo + hi) / 2.0;
        std::vector<double> first, second;
        for (const auto& s : reference) (s.round <= mid ? first : second).push_back(s.value);
        if (!first.empty() && !second.empty() && median_of(first) > 0) {
            r.drift.checked = true;
            r.drift.reference = reference_name;
            r.drift.change = median_of(second) / median_of(first) - 1;
        }
    }

    const GateMetricVerdict* worst = nullptr;
    const GateMetricVerdict* doubtful = nullptr;
    const GateMetricVerdict* unreplicated = nullptr;
    bool worst_is_timing = false;
    for (std::size_t i = 0; i < r.metrics.size(); ++i) {
        const auto& v = r.metrics[i];
        if (v.better != Better::Lower || !v.primary) continue;
        if (!v.note.empty() && !unreplicated) unreplicated = &v;
        if (v.verdict == GateVerdict::Worse && (!worst || v.ratio > worst->ratio)) {
            worst = &v;
            worst_is_timing = metrics[i].timing;
        }
        if (v.verdict == GateVerdict::Inconclusive && v.note.empty() && v.ratio - 1 >= opts.floor &&
            v.p_adjusted <= 2 * opts.alpha && !doubtful)
            doubtful = &v;
    }
    // The drift explains a regression when it is as large as the low end of
    // the effect's interval: the effect cannot be told from the host.
    if (worst && worst_is_timing && r.drift.checked && std::fabs(r.drift.change) >= worst->ratio_lo - 1) {
        r.status = GateStatus::Inconclusive;
        r.reason = "the host's speed changed by " + percent(r.drift.change) + " during the run (" + r.drift.reference +
                   "), as much as the largest effect claimed (" + worst->name + " " + percent(worst->ratio - 1) +
                   "): run again on a quieter host";
    } else if (worst) {
        char b[64];
        std::snprintf(b, sizeof b, "%.3g", worst->p_adjusted);
        r.status = GateStatus::Regression;
        r.reason = worst->name + " is worse by " + percent(worst->ratio - 1) + " (Holm-adjusted p = " + b + ")";
    } else if (unreplicated) {
        r.status = GateStatus::Inconclusive;
        r.reason = unreplicated->name + ": " + unreplicated->note + ", so boot effects cannot be told from arm effects";
    } else if (doubtful) {
        r.status = GateStatus::Inconclusive;
        r.reason = doubtful->name + " looks worse by " + percent(doubtful->ratio - 1) +
                   " but the data cannot decide: about " + std::to_string(doubtful->boots_needed) +
                   " boots per arm would";
    } else {
        r.status = GateStatus::NoRegression;
        r.reason = "no primary metric is significantly worse by the floor of " + percent(opts.floor).substr(1);
    }
    return r;
}

}  // namespace memhp::ab
