// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/curve.hpp"

#include <libalglib/dataanalysis.h>
#include <libalglib/specialfunctions.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace memhp::ab {
namespace {

constexpr std::size_t kMinPoints = 4;

std::string fmt(const char* f, double a, double b = 0, double c = 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, f, a, b, c);
    return buf;
}

}  // namespace

std::optional<GrowthFit> fit_growth(const std::vector<double>& present, const std::vector<double>& cost) {
    std::vector<std::pair<double, double>> pts;
    for (std::size_t i = 0; i < std::min(present.size(), cost.size()); ++i)
        if (present[i] > 0 && cost[i] > 0 && std::isfinite(cost[i]))
            pts.emplace_back(std::log(present[i]), std::log(cost[i]));
    if (pts.size() < kMinPoints) return std::nullopt;
    const auto [lo, hi] = std::minmax_element(pts.begin(), pts.end());
    if (lo->first == hi->first) return std::nullopt;  // one presence only: no slope
    alglib::real_2d_array xy;
    xy.setlength(static_cast<alglib::ae_int_t>(pts.size()), 2);
    for (std::size_t i = 0; i < pts.size(); ++i) {
        xy(static_cast<alglib::ae_int_t>(i), 0) = pts[i].first;
        xy(static_cast<alglib::ae_int_t>(i), 1) = pts[i].second;
    }
    alglib::ae_int_t info = 0;
    alglib::linearmodel lm;
    alglib::lrreport rep;
    alglib::lrbuild(xy, static_cast<alglib::ae_int_t>(pts.size()), 1, info, lm, rep);
    if (info != 1) return std::nullopt;
    alglib::real_1d_array v;
    alglib::ae_int_t nvars = 0;
    alglib::lrunpack(lm, v, nvars);
    GrowthFit f;
    f.points = pts.size();
    f.exponent = v[0];
    // ALGLIB's covariance takes the residual RMS (divisor n) as sigma;
    // n / (n - 2) makes it the unbiased residual variance.
    const double n = static_cast<double>(pts.size());
    const double se = std::sqrt(std::max(0.0, rep.c(0, 0)) * n / (n - 2));
    const double t = alglib::invstudenttdistribution(static_cast<alglib::ae_int_t>(pts.size() - 2), 0.975);
    f.lo = f.exponent - t * se;
    f.hi = f.exponent + t * se;
    return f;
}

CurveAnalysis analyse_curve(const std::string& phase, const std::vector<CurveStep>& steps) {
    CurveAnalysis a;
    a.phase = phase;
    std::vector<double> x, y;
    for (const auto& s : steps) x.push_back(s.present_blocks), y.push_back(s.cost_s);
    a.fit = fit_growth(x, y);
    const std::size_t eighth = std::max<std::size_t>(1, steps.size() / 8);
    std::map<std::string, bool> names;
    for (const auto& s : steps)
        for (const auto& [k, _] : s.sub_s) names[k] = true;
    const auto share = [&](const std::string& name, std::size_t from, std::size_t to) {
        double sub = 0, all = 0;
        for (std::size_t i = from; i < to; ++i) {
            auto it = steps[i].sub_s.find(name);
            sub += it == steps[i].sub_s.end() ? 0 : it->second;
            all += steps[i].cost_s;
        }
        return all > 0 ? sub / all : 0;
    };
    for (const auto& [name, _] : names) {
        SubPhaseShare s;
        s.name = name;
        if (!steps.empty()) {
            s.first = share(name, 0, eighth);
            s.last = share(name, steps.size() - eighth, steps.size());
        }
        std::vector<double> sy;
        for (const auto& st : steps) {
            auto it = st.sub_s.find(name);
            sy.push_back(it == st.sub_s.end() ? 0 : it->second);
        }
        s.fit = fit_growth(x, sy);
        a.sub.push_back(std::move(s));
    }
    std::stable_sort(a.sub.begin(), a.sub.end(), [](const SubPhaseShare& l, const SubPhaseShare& r) {
        return l.last - l.first > r.last - r.first;
    });
    if (!a.fit) {
        a.sentence = phase + ": too few steps to fit a growth exponent";
        return a;
    }
    a.sentence = phase + " cost grows as present^" + fmt("%.2f [%.2f, %.2f]", a.fit->exponent, a.fit->lo, a.fit->hi);
    if (!a.sub.empty()) {
        const auto& top = a.sub.front();
        a.sentence += "; " + top.name + "'s share " + (top.last >= top.first ? "rises" : "falls") +
                      fmt(" from %.0f %% to %.0f %%", top.first * 100, top.last * 100);
    }
    return a;
}

namespace {

std::optional<double> finite_number(const nlohmann::json& o, const char* key) {
    if (!o.is_object()) return std::nullopt;
    const auto it = o.find(key);
    if (it == o.end() || !it->is_number()) return std::nullopt;
    const double v = it->get<double>();
    return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
}

}  // namespace

nlohmann::json scale_analysis(const nlohmann::json& arm, std::uint64_t step_bytes) {
    nlohmann::json out = nlohmann::json::object();
    if (!arm.is_object() || !arm.contains("scale") || !arm["scale"].is_array() || step_bytes == 0) return out;
    std::vector<CurveStep> add, online;
    for (const auto& s : arm["scale"]) {
        if (!s.is_object() || !s.value("ok", false)) continue;
        const auto before = finite_number(s, "present_before_bytes");
        if (!before || *before < 0) continue;
        const double present = *before / static_cast<double>(step_bytes) + 1;  // in steps, this one included
        // The sub-phases the probes timed (trace event v6), else populate alone for the add.
        const auto subs = [&](const char* phase, CurveStep& st) {
            const auto it = s.find("sub_phases_s");
            if (it == s.end() || !it->is_object() || !it->contains(phase) || !(*it)[phase].is_object()) return false;
            for (const auto& [name, v] : (*it)[phase].items())
                if (v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= 0)
                    st.sub_s[name] = v.get<double>();
            return !st.sub_s.empty();
        };
        if (const auto a = finite_number(s, "probe_add_s")) {
            CurveStep st{present, *a, {}};
            if (!subs("add", st))
                if (const auto p = finite_number(s, "probe_populate_s")) st.sub_s["populate"] = *p;
            add.push_back(st);
        }
        if (const auto o = finite_number(s, "probe_online_s")) {
            CurveStep st{present, *o, {}};
            (void)subs("online", st);
            online.push_back(st);
        }
    }
    for (const auto& [phase, steps] : {std::pair<std::string, const std::vector<CurveStep>&>{"add", add},
                                       std::pair<std::string, const std::vector<CurveStep>&>{"online", online}}) {
        const auto a = analyse_curve(phase, steps);
        nlohmann::json j = {{"sentence", a.sentence}, {"points", steps.size()}, {"sub", nlohmann::json::array()}};
        if (a.fit) j.update({{"exponent", a.fit->exponent}, {"lo", a.fit->lo}, {"hi", a.fit->hi}});
        for (const auto& sub : a.sub) {
            nlohmann::json e = {{"name", sub.name}, {"first_share", sub.first}, {"last_share", sub.last}};
            if (sub.fit) e.update({{"exponent", sub.fit->exponent}, {"lo", sub.fit->lo}, {"hi", sub.fit->hi}});
            j["sub"].push_back(e);
        }
        out[phase] = j;
    }
    return out;
}

}  // namespace memhp::ab
