// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/stats.hpp"

#include <libalglib/statistics.h>

#include <algorithm>

namespace memhp::ab {
namespace {

alglib::real_1d_array to_alglib(const std::vector<double>& v) {
    alglib::real_1d_array a;
    a.setcontent(static_cast<alglib::ae_int_t>(v.size()), v.data());
    return a;
}

}  // namespace

Summary summarize(const std::vector<double>& samples) {
    Summary s;
    s.n = samples.size();
    if (samples.empty()) return s;
    auto a = to_alglib(samples);
    const auto n = static_cast<alglib::ae_int_t>(samples.size());
    alglib::samplemedian(a, n, s.median);
    alglib::samplepercentile(a, n, 0.25, s.p25);
    alglib::samplepercentile(a, n, 0.75, s.p75);
    const auto [lo, hi] = std::minmax_element(samples.begin(), samples.end());
    s.min = *lo;
    s.max = *hi;
    return s;
}

double mann_whitney_p(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.empty() || b.empty()) return 1;
    const auto [alo, ahi] = std::minmax_element(a.begin(), a.end());
    const auto [blo, bhi] = std::minmax_element(b.begin(), b.end());
    if (*alo == *ahi && *blo == *bhi && *alo == *blo) return 1;  // nothing to rank
    double both = 1, left = 1, right = 1;
    alglib::mannwhitneyutest(to_alglib(a), static_cast<alglib::ae_int_t>(a.size()), to_alglib(b),
                             static_cast<alglib::ae_int_t>(b.size()), both, left, right);
    return both;
}

}  // namespace memhp::ab
