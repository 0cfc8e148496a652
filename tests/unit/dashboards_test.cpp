// SPDX-License-Identifier: Apache-2.0
// The Grafana dashboard and the Prometheus rules, checked statically: every
// query names only metrics the exporter serves (or recorded rules), filters
// by the dashboard's variables, and every alert has a promtool unit test.
// (promtool itself checks and tests the rules: ctest rules.promtool_*; the VM
// suites evaluate every query against a real Prometheus.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "memhp/exporter/metrics.hpp"
#include "memhp/files.hpp"

namespace memhp::exporter {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kDash = fs::path(MEMHP_SOURCE_DIR) / "dashboards";

std::set<std::string> matches(const std::string& text, const std::string& re, int group = 1) {
    std::set<std::string> out;
    const std::regex r(re);
    for (std::sregex_iterator it(text.begin(), text.end(), r), end; it != end; ++it) out.insert((*it)[group]);
    return out;
}

std::set<std::string> served_series() {
    std::set<std::string> names;
    for (const auto& d : metric_catalog()) {
        names.insert(d.name);
        if (d.kind == MetricKind::Histogram)
            for (const char* s : {"_bucket", "_sum", "_count"}) names.insert(d.name + s);
    }
    return names;
}

std::set<std::string> recorded() {
    return matches(read_file(kDash / "prometheus/memhp-recording.rules.yml"), R"(- record: (\S+))");
}

TEST(Dashboard, VariablesAndDatasource) {
    const auto dash = json::parse(read_file(kDash / "grafana/memhp.json"));
    std::map<std::string, std::string> vars;
    for (const auto& v : dash["templating"]["list"]) vars[v["name"]] = v["type"];
    EXPECT_EQ(vars["datasource"], "datasource");
    EXPECT_EQ(vars["instance"], "query");
    EXPECT_EQ(vars["node"], "query");
    std::set<std::string> titles;
    for (const auto& p : dash["panels"]) {
        EXPECT_TRUE(titles.insert(p["title"]).second) << "duplicate title " << p["title"];
        if (p["type"] == "row") continue;
        EXPECT_EQ(p["datasource"]["uid"], "${datasource}") << p["title"];
        ASSERT_FALSE(p["targets"].empty()) << p["title"];
        for (const auto& t : p["targets"]) EXPECT_EQ(t["datasource"]["uid"], "${datasource}") << p["title"];
    }
}

TEST(Dashboard, QueriesUseServedMetricsAndTheInstanceVariable) {
    const auto dash = json::parse(read_file(kDash / "grafana/memhp.json"));
    const auto served = served_series();
    const auto rules = recorded();
    std::set<std::string> used;
    for (const auto& p : dash["panels"]) {
        if (p["type"] == "row") continue;
        for (const auto& t : p["targets"]) {
            const std::string expr = t["expr"];
            for (const auto& m : matches(expr, R"(\b(memhp_[a-z0-9_]+|[a-z_]+:memhp_[a-z0-9_:]+)\b)")) {
                EXPECT_TRUE(served.count(m) || rules.count(m))
                    << p["title"] << ": " << m << " is neither served nor recorded";
                used.insert(m);
            }
            EXPECT_THAT(expr, ::testing::HasSubstr("instance=~\"$instance\"")) << p["title"];
        }
    }
    for (const char* must : {"memhp_operation_duration_seconds_bucket", "memhp_memmap_allocated_bytes_total",
                             "memhp_add_free_memory_consumed_bytes_total", "memhp_operation_failures_total",
                             "memhp_hotplugged_memory_bytes", "memhp_memmap_on_memory_unused_total"})
        EXPECT_TRUE(used.count(must)) << "the dashboard does not show " << must;
}

TEST(Rules, EveryAlertHasAPromtoolTestAndARunbook) {
    const std::string alerts = read_file(kDash / "prometheus/memhp-alerts.rules.yml");
    const std::string tests = read_file(kDash / "prometheus/tests/memhp-rules.test.yml");
    const auto names = matches(alerts, R"(- alert: (\S+))");
    ASSERT_GE(names.size(), 5u);
    const auto tested = matches(tests, R"(alertname: (\S+))");
    for (const auto& a : names) EXPECT_TRUE(tested.count(a)) << a << " has no promtool test";
    // Each rule block carries summary, description and runbook annotations.
    EXPECT_EQ(matches(alerts, R"(\n\s+runbook: (.+))").size(), names.size());
    EXPECT_EQ(matches(alerts, R"(\n\s+summary: (.+))").size(), names.size());
}

TEST(Rules, RecordingRulesUseServedMetrics) {
    const auto served = served_series();
    const auto rules = recorded();
    std::string text = read_file(kDash / "prometheus/memhp-recording.rules.yml");
    // Recorded names (level:memhp_x:op) contain memhp_ too: blank them out first.
    text = std::regex_replace(text, std::regex(R"([a-z_]+:memhp_[a-z0-9_]+:[a-z0-9_]+)"), "");
    for (const auto& m : matches(text, R"(\b(memhp_[a-z0-9_]+)\b)"))
        EXPECT_TRUE(served.count(m)) << m << " is not served by memhp-exporter";
    for (const auto& r : rules)
        EXPECT_TRUE(std::regex_match(r, std::regex("[a-z_]+:memhp_[a-z0-9_]+:[a-z0-9_]+"))) << r;
}

}  // namespace
}  // namespace memhp::exporter
