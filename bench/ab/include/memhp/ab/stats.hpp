// SPDX-License-Identifier: Apache-2.0
#pragma once
// Summary statistics and the significance test behind `memhp ab` and
// `memhp compare`. The numerics are ALGLIB's (Debian: libalglib-dev).
#include <cstddef>
#include <vector>

namespace memhp::ab {

struct Summary {
    std::size_t n = 0;
    double median = 0, p25 = 0, p75 = 0, min = 0, max = 0;
};

[[nodiscard]] Summary summarize(const std::vector<double>& samples);

// Two-sided p-value of the Mann-Whitney U test that `a` and `b` come from the
// same distribution. 1 when either sample is empty or both are one constant.
[[nodiscard]] double mann_whitney_p(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace memhp::ab
