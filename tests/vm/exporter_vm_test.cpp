// SPDX-License-Identifier: Apache-2.0
// memhp-exporter end to end: the exporter runs inside a lab guest, a real
// Prometheus server on the host scrapes it through a QEMU port forward on
// 127.0.0.1, and the lab runs hot-plug cycles. Then: page counts through
// Prometheus equal what an independent `memhp trace` saw, every dashboard
// panel query and recording rule returns data, the alerts the scenario must
// raise are firing, and the main panels are rendered to PNG with gnuplot
// (build/exporter-e2e/<suite>/). One suite per memmap_on_memory mode.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "memhp/lab/guest_trace.hpp"
#include "prometheus_support.hpp"
#include "vm_support.hpp"

namespace memhp::vmtest {
namespace {

constexpr std::uint16_t kGuestPort = 10466;
constexpr int kCycles = 3;

std::string build_bin(const std::string& name) { return (lab::default_agent_path().parent_path() / name).string(); }

double now_unix() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

// The value of an unlabelled sample in a text exposition.
std::optional<double> sample(const std::string& text, const std::string& name) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with(name + " ")) return std::stod(line.substr(name.size() + 1));
    return std::nullopt;
}

template <typename Derived>
class ExporterSuite : public GuestSuite<Derived> {
protected:
    using B = GuestSuite<Derived>;

    static lab::GuestConfig ConfigWithForward(bool mmo) {
        auto cfg = config("6.1", mmo);
        host_port_ = free_loopback_port();
        cfg.tcp_forwards = {{host_port_, kGuestPort}};
        return cfg;
    }

    static void SetUpTestSuite() {
        B::SetUpTestSuite();
        if (!B::guest_) return;
        try {
            auto& agent = B::guest_->agent();
            // Run-time metrics need the kernel's BPF statistics.
            agent.write("/proc/sys/kernel/bpf_stats_enabled", "1");
            exporter_pid_ =
                agent.spawn({build_bin("memhp-exporter"), "--listen", "0.0.0.0:" + std::to_string(kGuestPort)},
                            "/tmp/exporter.out");
            wait_for_output(agent, exporter_pid_, "/tmp/exporter.out", "serving http://", "memhp-exporter");
            t_start_ = now_unix();
            prom_ = std::make_unique<PrometheusServer>(std::vector<std::string>{target()});
            prom_->wait_targets_up(1, std::chrono::seconds(60));
        } catch (const std::exception& e) {
            setup_error_ = e.what();
        }
    }
    static void TearDownTestSuite() {
        prom_.reset();
        B::TearDownTestSuite();
    }
    void SetUp() override {
        B::SetUp();
        ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    }

    static std::string target() { return "127.0.0.1:" + std::to_string(host_port_); }
    static std::string url() { return "http://" + target() + "/metrics"; }
    static std::string sel() { return "instance=\"" + target() + "\""; }

    // Hot-plug cycles traced by an independent `memhp trace --json`, with the
    // exporter scraped back to back from the host the whole time.
    void RunScenario(bool memmap_on_memory) {
        auto& agent = B::guest_->agent();
        lab::GuestTrace trace(*B::guest_);

        std::atomic<bool> stop = false;
        std::atomic<int> scrapes = 0, scrape_errors = 0;
        std::string first_error;
        std::thread load([&] {
            while (!stop) {
                auto r = run({"curl", "-sS", "--fail", "-o", "/dev/null", "--max-time", "10", url()},
                             {.timeout = std::chrono::seconds(15)});
                (r.ok() ? scrapes : scrape_errors)++;
                if (!r.ok() && first_error.empty()) first_error = r.err;
            }
        });
        std::string failure;
        try {
            // An offline that must fail (boot memory holds kernel data).
            try {
                agent.write("/sys/devices/system/memory/memory0/state", "offline");
                failure = "offlining boot block memory0 succeeded";
            } catch (const lab::AgentError& e) {
                offline_errno_ = e.guest_errno();
            }
            // Each block stays online for a few scrapes, so the live gauges show it.
            for (int i = 1; i <= kCycles; ++i) {
                auto d = B::mem_->add_dimm(kBlock, 1);
                B::mem_->online(d, lab::Zone::Movable);
                std::this_thread::sleep_for(std::chrono::seconds(2));
                B::mem_->offline(d);
                B::mem_->remove(d);
                std::this_thread::sleep_for(std::chrono::seconds(1));
            }
            if (memmap_on_memory && failure.empty()) {
                // 6.1 uses memmap_on_memory only for single-block adds: 1 GiB falls back.
                auto d = B::mem_->add_dimm(8 * kBlock, 1);
                B::mem_->remove(d);
            }
        } catch (const std::exception& e) {
            failure = e.what();
        }
        stop = true;
        load.join();
        std::string trace_error;
        try {
            trace_text_ = trace.stop();
        } catch (const std::exception& e) {
            trace_error = e.what();
        }
        ASSERT_TRUE(failure.empty()) << failure;
        ASSERT_TRUE(trace_error.empty()) << trace_error;
        EXPECT_GT(scrapes.load(), 0);
        EXPECT_EQ(scrape_errors.load(), 0) << first_error;
        std::cerr << "[exporter] " << scrapes.load() << " back-to-back scrapes during the cycles, "
                  << scrape_errors.load() << " errors" << std::endl;
        trace_ops_ = lab::parse_ops(trace_text_);
        // The scrapes' network interrupts land on the hot-plug task at times;
        // both tracers leave those pages out of the ops (checked below).
        if (auto at = trace_text_.find("page events from interrupts"); at != std::string::npos)
            std::cerr << "[exporter] memhp trace: " << trace_text_.substr(at, trace_text_.find('\n', at) - at)
                      << std::endl;
        // Wait until Prometheus has a scrape newer than the last event.
        const double events = sample(http_get(url()), "memhp_events_total").value_or(-1);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (prom_->scalar("memhp_events_total{" + sel() + "}") != events) {
            ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "Prometheus never saw events=" << events;
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
        }
        std::this_thread::sleep_for(std::chrono::seconds(3));  // a few rule evaluations on the final state
        scenario_done_ = true;
    }

    // Sum of a memmap field over the successful adds memhp trace reported.
    std::uint64_t TracedAddPages(const std::string& field) const {
        std::uint64_t n = 0;
        for (const auto& o : trace_ops_)
            if (o["phase"] == "add" && o["ret"] == 0) n += o["memmap"][field].get<std::uint64_t>();
        return n;
    }
    double PromPages(const std::string& labels) const {
        return prom_->scalar("sum(memhp_memmap_allocated_bytes_total{" + sel() + "," + labels + "})") / 4096;
    }

    void CheckCountsAgainstTheCollector() {
        ASSERT_TRUE(scenario_done_);
        // The exporter and memhp trace are two independent probe sets on the same kernel.
        EXPECT_EQ(PromPages("source=\"altmap\""), TracedAddPages("altmap_pages")) << trace_text_;
        EXPECT_EQ(PromPages("source=\"page_allocator\""), TracedAddPages("buddy_pages")) << trace_text_;
        EXPECT_EQ(PromPages("source=\"page_tables\""), TracedAddPages("pagetable_pages")) << trace_text_;
        std::uint64_t traced_free = 0;
        for (const auto& o : trace_ops_)
            if (o["phase"] == "add" && o["ret"] == 0) traced_free += o["free_bytes_consumed"].get<std::uint64_t>();
        EXPECT_EQ(prom_->scalar("sum(memhp_add_free_memory_consumed_bytes_total{" + sel() + "})"),
                  static_cast<double>(traced_free));
        EXPECT_EQ(prom_->scalar("memhp_ring_buffer_dropped_events_total{" + sel() + "}"), 0);
        EXPECT_EQ(prom_->scalar("sum(memhp_hotplugged_memory_bytes{" + sel() + "})"), 0) << "all removed again";
        EXPECT_EQ(prom_->scalar("sum(memhp_hotplugged_memmap_bytes{" + sel() + "})"), 0);
        ASSERT_NE(offline_errno_, 0);
        EXPECT_EQ(prom_->scalar("memhp_operation_failures_total{" + sel() + ",phase=\"offline\",errno=\"" +
                                errno_label(offline_errno_) + "\"}"),
                  1);
        std::size_t adds = 0;
        for (const auto& o : trace_ops_) adds += o["phase"] == "add";
        EXPECT_EQ(prom_->scalar("sum(memhp_operation_duration_seconds_count{" + sel() + ",phase=\"add\"})"),
                  static_cast<double>(adds));
        EXPECT_EQ(prom_->scalar("memhp_bpf_stats_enabled{" + sel() + "}"), 1);
        EXPECT_GT(prom_->scalar("sum(memhp_bpf_program_runs_total{" + sel() + "})"), 0);
    }

    static std::string errno_label(int e) {
        const char* n = ::strerrorname_np(e);
        return n ? n : std::to_string(e);
    }

    // Every panel query and recording rule over the run, as Grafana would ask.
    void CheckPanelsAndRules(const std::string& suite) {
        ASSERT_TRUE(scenario_done_);
        const double end = now_unix(), start = t_start_ - 5, step = 1;
        const auto dash = json::parse(read_file(source_dir() / "dashboards/grafana/memhp.json"));
        std::vector<std::string> empty;
        std::map<std::string, std::vector<Series>> results;
        std::size_t queries = 0;
        for (const auto& q : dashboard_queries(dash)) {
            ++queries;
            const std::string expr = expand_variables(q.expr, "1m");
            const std::string name = "panel '" + q.panel + "' query " + q.ref_id;
            try {
                auto series = q.instant ? std::vector<Series>{} : prom_->query_range(expr, start, end, step);
                if (q.instant)
                    for (const auto& s : prom_->query(expr))
                        series.push_back({s["metric"], {{end, std::stod(s["value"][1].get<std::string>())}}});
                bool finite = false;
                for (const auto& s : series)
                    for (const auto& [t, v] : s.points) finite = finite || std::isfinite(v);
                if (!finite) empty.push_back(name + ": " + expr);
                results[q.panel + "/" + q.ref_id] = std::move(series);
            } catch (const std::exception& e) {
                empty.push_back(name + " failed: " + e.what());
            }
        }
        EXPECT_GE(queries, 15u);
        const std::string rules = read_file(source_dir() / "dashboards/prometheus/memhp-recording.rules.yml");
        const std::regex record_re(R"(- record: (\S+))");
        std::size_t records = 0;
        for (std::sregex_iterator it(rules.begin(), rules.end(), record_re), end_it; it != end_it; ++it) {
            ++records;
            const std::string rec = (*it)[1];
            bool finite = false;
            for (const auto& s : prom_->query_range(rec, start, end, step))
                for (const auto& [t, v] : s.points) finite = finite || std::isfinite(v);
            if (!finite) empty.push_back("recording rule " + rec);
        }
        EXPECT_GE(records, 9u);
        for (const char* var : {"instance", "node"}) {
            const auto values = json::parse(
                http_get(prom_->base() + "/api/v1/label/" + var + "/values",
                         {{"match[]", var == std::string("instance") ? "memhp_build_info" : "memhp_memory_blocks"}}));
            if (values["data"].empty()) empty.push_back(std::string("dashboard variable $") + var);
        }
        EXPECT_TRUE(empty.empty()) << "no data for:\n  " << [&] {
            std::string s;
            for (const auto& e : empty) s += e + "\n  ";
            return s;
        }();

        // What a person would see: the main panels as PNGs.
        const fs::path out = lab::default_agent_path().parent_path().parent_path() / "exporter-e2e" / suite;
        auto render = [&](const std::string& key, const std::string& file, const std::string& title,
                          const std::string& ylabel, const std::vector<std::string>& label_keys,
                          const std::string& prefix = "") {
            std::vector<std::pair<std::string, Series>> named;
            for (const auto& s : results[key]) {
                std::string name = prefix;
                for (const auto& k : label_keys)
                    name += (name.empty() ? "" : " ") + s.metric.value(k, std::string("?"));
                named.emplace_back(name, s);
            }
            const double scale = ylabel == "bytes" ? 1.0 / (1 << 20) : ylabel == "seconds" ? 1000 : 1;
            const std::string unit = ylabel == "bytes" ? "MiB" : ylabel == "seconds" ? "milliseconds" : ylabel;
            render_png(out / file, title + " (" + suite + ")", unit, named, t_start_, scale);
        };
        render("Phase latency p50 / p99/A", "latency-p99.png", "Phase latency p99", "seconds", {"phase"}, "p99");
        render("Phase latency p50 / p99/B", "latency-p50.png", "Phase latency p50", "seconds", {"phase"}, "p50");
        render("Memmap source split/A", "memmap-source.png", "Memmap bytes taken by hot-add, by source", "bytes",
               {"source"});
        render("Memmap NUMA locality/A", "memmap-locality.png", "Memmap bytes by NUMA locality", "bytes", {"locality"});
        render("Free memory consumed by hot-add/A", "free-memory-consumed.png", "Free memory consumed by hot-add",
               "bytes", {"node"}, "node");
        render("Hot-plugged memory present/A", "hotplugged-present.png", "Hot-plugged memory present", "bytes",
               {"node"}, "node");
        render("Operations per phase/A", "operations.png", "Operations per phase (per 1m)", "operations",
               {"phase", "memmap_mode"});
        render("Failures by phase and errno/A", "failures.png", "Failures by phase and errno", "failures",
               {"phase", "errno"});
        std::cerr << "[exporter] panels rendered to " << out.string() << std::endl;
    }

    std::set<std::string> FiringAlerts() const {
        std::set<std::string> names;
        for (const auto& s : prom_->query("ALERTS{alertstate=\"firing\"," + sel() + "}"))
            names.insert(s["metric"]["alertname"].get<std::string>());
        return names;
    }

    void StopWithSigterm() {
        auto& agent = B::guest_->agent();
        // Figures for the record (not asserted): the exporter's memory after the run.
        if (auto status = agent.try_read("/proc/" + std::to_string(exporter_pid_) + "/status")) {
            std::istringstream in(*status);
            std::string line;
            while (std::getline(in, line))
                if (line.starts_with("VmHWM") || line.starts_with("VmRSS"))
                    std::cerr << "[exporter] memhp-exporter in the guest: " << line << std::endl;
        }
        agent.signal(exporter_pid_, SIGTERM);
        auto code = agent.wait(exporter_pid_, std::chrono::seconds(30));
        const std::string out = agent.try_read("/tmp/exporter.out").value_or("");
        ASSERT_TRUE(code) << "memhp-exporter ignored SIGTERM:\n" << out;
        EXPECT_EQ(*code, 0) << out;
        EXPECT_NE(out.find("SIGTERM received"), std::string::npos) << out;
        EXPECT_NE(out.find("shut down cleanly"), std::string::npos) << out;
        // The port is free again: a new exporter binds it at once.
        auto again = agent.exec({"/bin/sh", "-c",
                                 build_bin("memhp-exporter") + " --listen 127.0.0.1:" + std::to_string(kGuestPort) +
                                     " & pid=$!; sleep 3; kill -TERM $pid; wait $pid"},
                                std::chrono::seconds(60));
        EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
    }

    // Started as root, the exporter holds no capability in any of its threads
    // once /metrics answers (the scenario after this shows it still counts).
    void CapabilitiesDroppedOnceServing() {
        auto& agent = B::guest_->agent();
        (void)http_get(url());
        const std::string pid = std::to_string(exporter_pid_);
        auto r = agent.sh("grep -H -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/" + pid + "/task/*/status");
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
        std::istringstream in(r.out);
        std::string line;
        std::set<std::string> tasks;
        std::size_t sets = 0;
        while (std::getline(in, line)) {
            tasks.insert(line.substr(0, line.find("/status")));
            const std::string value = trim(line.substr(line.rfind(':') + 1));
            if (line.find("NoNewPrivs") != std::string::npos) {
                EXPECT_EQ(value, "1") << line;
            } else {
                ++sets;
                EXPECT_EQ(value, "0000000000000000") << line;
            }
        }
        // The main thread and civetweb's workers, each with four sets.
        EXPECT_GE(tasks.size(), 2u) << r.out;
        EXPECT_EQ(sets, 4 * tasks.size()) << r.out;
        const std::string out = agent.try_read("/tmp/exporter.out").value_or("");
        EXPECT_NE(out.find("capabilities dropped (were =ep)"), std::string::npos) << out;
    }

    void NonRootIsToldWhichCapabilities() {
        auto r = B::guest_->agent().exec({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                          "--inh-caps=-all", build_bin("memhp-exporter"), "--listen", "127.0.0.1:0"},
                                         std::chrono::seconds(60));
        EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
        EXPECT_NE(r.err.find("CAP_BPF and CAP_PERFMON"), std::string::npos) << r.err;
    }

    void DirectScrapePassesPromtool() {
        const std::string text = http_get(url());
        for (const char* name : {"memhp_build_info", "memhp_probe_attached", "memhp_memory_blocks",
                                 "memhp_memory_block_size_bytes", "memhp_bpf_program_runs_total"})
            EXPECT_NE(text.find("# TYPE " + std::string(name) + " "), std::string::npos) << name << "\n" << text;
        auto lint = run({"promtool", "check", "metrics"}, {.timeout = std::chrono::seconds(30), .stdin_data = text});
        EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
        EXPECT_EQ(lint.out + lint.err, "") << "promtool findings on a real scrape";
    }

    static inline std::uint16_t host_port_ = 0;
    static inline int exporter_pid_ = -1;
    static inline double t_start_ = 0;
    static inline std::unique_ptr<PrometheusServer> prom_;
    static inline std::string setup_error_;
    static inline bool scenario_done_ = false;
    static inline int offline_errno_ = 0;
    static inline std::string trace_text_;
    static inline std::vector<json> trace_ops_;
};

class ExporterMmoOff : public ExporterSuite<ExporterMmoOff> {
public:
    static lab::GuestConfig Config() { return ConfigWithForward(false); }
};
class ExporterMmoOn : public ExporterSuite<ExporterMmoOn> {
public:
    static lab::GuestConfig Config() { return ConfigWithForward(true); }
};

// Tests run in this order within a suite; later ones use the scenario's data.
TEST_F(ExporterMmoOff, ScrapeFromTheHostPassesPromtool) { DirectScrapePassesPromtool(); }
TEST_F(ExporterMmoOff, CapabilitiesDroppedOnceServing) { CapabilitiesDroppedOnceServing(); }
TEST_F(ExporterMmoOff, NonRootIsToldWhichCapabilities) { NonRootIsToldWhichCapabilities(); }
TEST_F(ExporterMmoOff, PageAllocatorMemmapIsRemoteAndMatchesTheCollector) {
    RunScenario(false);
    CheckCountsAgainstTheCollector();
    // memmap_on_memory=0: each block's 512-page memmap from node 0's page allocator, for node 1.
    EXPECT_EQ(PromPages("source=\"page_allocator\",node=\"1\",memmap_node=\"0\",locality=\"remote\""),
              kCycles * kMemmapPages);
    EXPECT_EQ(PromPages("source=\"altmap\""), 0);
    EXPECT_EQ(prom_->scalar("instance:memhp_memmap_remote_bytes:ratio{" + sel() + "}"), 1);
    // Net of pages the allocator took back during the add, so a little under the
    // memmap itself at times; the exact figure is checked against memhp trace.
    EXPECT_GT(prom_->scalar("memhp_add_free_memory_consumed_bytes_total{" + sel() + ",node=\"1\"}"),
              kCycles * kMemmapPages * 4096.0 * 0.9);
}
TEST_F(ExporterMmoOff, EveryPanelAndRecordingRuleHasData) { CheckPanelsAndRules("mmo0"); }
TEST_F(ExporterMmoOff, ScenarioAlertsFire) {
    const auto firing = FiringAlerts();
    EXPECT_TRUE(firing.count("MemhpRemoteMemmap")) << prom_->query("ALERTS").dump();
    EXPECT_TRUE(firing.count("MemhpOfflineFailures")) << prom_->query("ALERTS").dump();
    EXPECT_FALSE(firing.count("MemhpMemmapOnMemoryUnused")) << "memmap_on_memory is off";
    EXPECT_FALSE(firing.count("MemhpRingBufferDrops"));
}
TEST_F(ExporterMmoOff, SigtermStopsItCleanly) { StopWithSigterm(); }

TEST_F(ExporterMmoOn, ScrapeFromTheHostPassesPromtool) { DirectScrapePassesPromtool(); }
TEST_F(ExporterMmoOn, CapabilitiesDroppedOnceServing) { CapabilitiesDroppedOnceServing(); }
TEST_F(ExporterMmoOn, AltmapMemmapIsLocalAndMatchesTheCollector) {
    RunScenario(true);
    CheckCountsAgainstTheCollector();
    // memmap_on_memory=1: single-block adds carve the 512 pages from the block itself.
    EXPECT_EQ(PromPages("source=\"altmap\",node=\"1\",memmap_node=\"1\",locality=\"local\""), kCycles * kMemmapPages);
    // ...and the 1 GiB add fell back to node 0's page allocator, flagged as unused.
    EXPECT_EQ(PromPages("source=\"page_allocator\",locality=\"remote\""), 8 * kMemmapPages);
    EXPECT_EQ(prom_->scalar("memhp_memmap_on_memory_unused_total{" + sel() + "}"), 1);
    EXPECT_EQ(prom_->scalar("memhp_memmap_on_memory_enabled{" + sel() + "}"), 1);
}
TEST_F(ExporterMmoOn, EveryPanelAndRecordingRuleHasData) { CheckPanelsAndRules("mmo1"); }
TEST_F(ExporterMmoOn, ScenarioAlertsFire) {
    const auto firing = FiringAlerts();
    EXPECT_TRUE(firing.count("MemhpMemmapOnMemoryUnused")) << prom_->query("ALERTS").dump();
    EXPECT_TRUE(firing.count("MemhpOfflineFailures")) << prom_->query("ALERTS").dump();
    EXPECT_TRUE(firing.count("MemhpRemoteMemmap")) << "the 1 GiB fallback is remote";
}
TEST_F(ExporterMmoOn, SigtermStopsItCleanly) { StopWithSigterm(); }

}  // namespace
}  // namespace memhp::vmtest
