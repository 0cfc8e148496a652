// SPDX-License-Identifier: Apache-2.0
#pragma once
// The per-cycle metrics of an A/B run: what each one measures, its unit and
// which direction is better. Cycles store them under "metrics" in the
// results JSON (docs/ab-json.md); `compare` reads them back by name.
#include <optional>
#include <string>
#include <vector>

namespace memhp::ab {

enum class Better { Lower, Neither };

struct MetricDef {
    std::string name;
    std::string unit;  // "s", "bytes"
    Better better;
    std::string help;
};

// Every metric, in report order.
[[nodiscard]] const std::vector<MetricDef>& metric_defs();
[[nodiscard]] const MetricDef* find_metric(const std::string& name);
// The metrics as the markdown table in docs/ab-json.md.
[[nodiscard]] std::string metrics_markdown();

}  // namespace memhp::ab
