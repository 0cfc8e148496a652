// SPDX-License-Identifier: Apache-2.0
#pragma once
// A real Prometheus server on the host's loopback for end-to-end tests: its
// own config and storage in a temp dir, queried through the HTTP API (curl).
// Plus the dashboard's panel queries, and gnuplot renderings of them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/process.hpp"

namespace memhp::vmtest {

namespace fs = std::filesystem;
using nlohmann::json;

// A TCP port on 127.0.0.1 free right now (the kernel's pick for port 0).
inline std::uint16_t free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0)
        throw Error("cannot find a free loopback port");
    ::close(fd);
    return ntohs(sa.sin_port);
}

inline fs::path source_dir() { return MEMHP_SOURCE_DIR; }

// GET with curl; throws with curl's message on failure.
inline std::string http_get(const std::string& url, const std::vector<std::pair<std::string, std::string>>& params = {},
                            std::chrono::seconds timeout = std::chrono::seconds(20)) {
    std::vector<std::string> argv = {"curl", "-sS", "--fail-with-body", "--max-time", std::to_string(timeout.count()),
                                     "-G",   url};
    for (const auto& [k, v] : params) argv.insert(argv.end(), {"--data-urlencode", k + "=" + v});
    auto r = run(argv, {.timeout = timeout + std::chrono::seconds(5)});
    if (!r.ok()) throw Error("GET " + url + " failed: " + r.err + r.out);
    return r.out;
}

struct Series {
    json metric;                                    // labels
    std::vector<std::pair<double, double>> points;  // (unix time, value)
};

class PrometheusServer {
public:
    // Scrapes `targets` (host:port) every second as job "memhp", with memhp's
    // recording and alerting rules evaluated every second.
    explicit PrometheusServer(const std::vector<std::string>& targets) {
        if (!find_program("prometheus"))
            throw Error("prometheus not found: run scripts/install-deps.sh (Debian package prometheus)");
        port_ = free_loopback_port();
        const auto rules = source_dir() / "dashboards/prometheus";
        std::string targets_yaml;
        for (const auto& t : targets) targets_yaml += "'" + t + "',";
        write_file(dir_.path() / "prometheus.yml",
                   "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                   "rule_files:\n  - " +
                       (rules / "memhp-recording.rules.yml").string() + "\n  - " +
                       (rules / "memhp-alerts.rules.yml").string() +
                       "\nscrape_configs:\n  - job_name: memhp\n    static_configs:\n      - targets: [" +
                       targets_yaml + "]\n");
        proc_ = ChildProcess::spawn(
            {"prometheus", "--config.file=" + (dir_.path() / "prometheus.yml").string(),
             "--storage.tsdb.path=" + (dir_.path() / "data").string(),
             "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--web.enable-lifecycle", "--log.level=warn"},
            dir_.path() / "prometheus.log");
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (true) {
            if (!proc_.running()) throw Error("prometheus exited:\n" + log_tail());
            auto r = run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", base() + "/-/ready"},
                         {.timeout = std::chrono::seconds(5)});
            if (r.out == "200") break;
            if (std::chrono::steady_clock::now() > deadline)
                throw Error("prometheus not ready in 60 s:\n" + log_tail());
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    }
    ~PrometheusServer() { proc_.terminate(std::chrono::seconds(5)); }

    [[nodiscard]] std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
    [[nodiscard]] std::string log_tail() const {
        return last_lines(try_read_file(dir_.path() / "prometheus.log").value_or(""), 15);
    }

    // /api/v1/query: the result vector.
    [[nodiscard]] json query(const std::string& promql) const {
        return data(http_get(base() + "/api/v1/query", {{"query", promql}}), promql)["result"];
    }
    // Sum of an instant vector's values (0 for an empty result).
    [[nodiscard]] double scalar(const std::string& promql) const {
        double sum = 0;
        for (const auto& s : query(promql)) sum += std::stod(s["value"][1].get<std::string>());
        return sum;
    }
    [[nodiscard]] std::vector<Series> query_range(const std::string& promql, double start, double end,
                                                  double step) const {
        auto d = data(http_get(base() + "/api/v1/query_range", {{"query", promql},
                                                                {"start", std::to_string(start)},
                                                                {"end", std::to_string(end)},
                                                                {"step", std::to_string(step)}}),
                      promql);
        std::vector<Series> out;
        for (const auto& s : d["result"]) {
            Series series{s["metric"], {}};
            for (const auto& v : s["values"])
                series.points.emplace_back(v[0].get<double>(), std::stod(v[1].get<std::string>()));
            out.push_back(std::move(series));
        }
        return out;
    }
    // Waits until every target reports up == 1.
    void wait_targets_up(std::size_t n, std::chrono::seconds limit) const {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (scalar("sum(up{job=\"memhp\"})") < static_cast<double>(n)) {
            if (std::chrono::steady_clock::now() > deadline)
                throw Error("scrape targets not up within " + std::to_string(limit.count()) +
                            " s: " + http_get(base() + "/api/v1/targets"));
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
    }

private:
    static json data(const std::string& body, const std::string& promql) {
        auto j = json::parse(body);
        if (j.value("status", "") != "success") throw Error("query '" + promql + "' failed: " + body);
        return j["data"];
    }
    TempDir dir_{"memhp-prometheus"};
    std::uint16_t port_ = 0;
    ChildProcess proc_;
};

// One query of one dashboard panel, with Grafana's variables filled in.
struct PanelQuery {
    std::string panel;
    std::string ref_id;
    std::string expr;  // as written in the dashboard
    bool instant = false;
};

inline std::vector<PanelQuery> dashboard_queries(const json& dash) {
    std::vector<PanelQuery> out;
    for (const auto& p : dash["panels"]) {
        if (p.value("type", "") == "row") continue;
        for (const auto& t : p.value("targets", json::array()))
            out.push_back({p["title"], t.value("refId", "?"), t["expr"], t.value("instant", false)});
    }
    return out;
}

// Grafana's variables as Grafana fills them for "All" and a given range.
inline std::string expand_variables(std::string expr, const std::string& rate_interval) {
    auto replace_all = [&](const std::string& from, const std::string& to) {
        for (std::size_t at = expr.find(from); at != std::string::npos; at = expr.find(from, at + to.size()))
            expr.replace(at, from.size(), to);
    };
    replace_all("$__rate_interval", rate_interval);
    replace_all("$__interval", "5s");
    replace_all("$instance", ".*");
    replace_all("$node", ".*");
    return expr;
}

// A line chart of `series` (one line each) into `png`, with gnuplot; values
// are multiplied by `scale` (e.g. bytes -> MiB) to match `ylabel`.
inline void render_png(const fs::path& png, const std::string& title, const std::string& ylabel,
                       const std::vector<std::pair<std::string, Series>>& series, double t0, double scale = 1) {
    fs::create_directories(png.parent_path());
    const fs::path dat = png.parent_path() / (png.stem().string() + ".dat");
    std::string data, plot;
    std::size_t index = 0;
    for (const auto& [name, s] : series) {
        bool any = false;
        for (const auto& [t, v] : s.points)
            if (std::isfinite(v)) {
                data += std::to_string(t - t0) + " " + std::to_string(v * scale) + "\n";
                any = true;
            }
        if (!any) continue;
        data += "\n\n";
        std::string safe = name;
        for (auto& c : safe)
            if (c == '"' || c == '_') c = ' ';
        plot += std::string(plot.empty() ? "plot " : ", ") + "'" + dat.string() + "' index " + std::to_string(index++) +
                " using 1:2 with lines lw 2 title \"" + safe + "\"";
    }
    if (plot.empty()) throw Error("nothing finite to plot for " + title);
    write_file(dat, data);
    const std::string script =
        "set terminal pngcairo size 900,420 font 'sans,9'\nset output '" + png.string() + "'\nset title \"" + title +
        "\"\nset xlabel 'seconds since the exporter started'\n"
        "set ylabel \"" +
        ylabel + "\"\nset key outside right top\nset grid\n" + "set format y '%.4g'\nset yrange [0:*]\n" + plot + "\n";
    write_file(png.parent_path() / (png.stem().string() + ".gp"), script);
    run_checked({"gnuplot", (png.parent_path() / (png.stem().string() + ".gp")).string()},
                {.timeout = std::chrono::seconds(60)});
}

}  // namespace memhp::vmtest
