// SPDX-License-Identifier: Apache-2.0
// memhp-exporter: the metric catalog and its generated docs, the rendering of
// collector state into Prometheus families, host state from a fixture sysfs
// tree, --listen parsing, and that a scrape never stalls event consumption.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <regex>
#include <set>
#include <thread>

#include "fake_live_state.hpp"
#include "memhp/error.hpp"
#include "memhp/exporter/daemon.hpp"
#include "memhp/exporter/live_state.hpp"
#include "memhp/exporter/metrics.hpp"
#include "memhp/files.hpp"

namespace memhp::exporter {
namespace {

using collector::MemmapMode;
using collector::MemmapSource;
using collector::Phase;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr std::uint64_t kBlockPages = 32768;  // 128 MiB
constexpr std::uint64_t kHotPfn = 0x140000;   // node 1
constexpr std::uint64_t kNode1Start = 0x100000;

class TwoNodes : public collector::NodeResolver {
public:
    int node_of_pfn(std::uint64_t pfn) override { return pfn < kNode1Start ? 0 : 1; }
};

memhp_event ev(std::uint32_t type, std::uint64_t op_id) {
    memhp_event e;
    std::memset(&e, 0, sizeof e);
    e.type = type;
    e.op_id = op_id;
    e.nid = -1;
    return e;
}

memhp_event page_alloc(std::uint64_t op_id, std::uint64_t pfn, std::uint32_t order) {
    auto e = ev(MEMHP_EV_PAGE_ALLOC, op_id);
    e.pfn = pfn;
    e.order = order;
    e.op_type = MEMHP_EV_ADD;
    return e;
}

memhp_event op(std::uint32_t type, std::uint64_t op_id, int nid, std::uint64_t ns, int ret = 0) {
    auto e = ev(type, op_id);
    e.nid = nid;
    e.start_pfn = kHotPfn;
    e.nr_pages = kBlockPages;
    e.duration_ns = ns;
    e.ret = ret;
    std::strncpy(e.zone, "Movable", sizeof e.zone);
    return e;
}

// One memmap_on_memory=0 cycle on node 1 (memmap: an order-9 block and a
// page-table page from node 0), then a failed offline of a boot block.
void feed_cycle(test::FakeLiveState& s, std::uint64_t first_id) {
    s.consume(page_alloc(first_id, 0x10000, 9));
    s.consume(page_alloc(first_id, 0x12000, 0));
    s.consume(op(MEMHP_EV_POPULATE, first_id, 1, 1'500'000));
    auto add = op(MEMHP_EV_ADD, first_id, 1, 3'000'000);
    add.flags |= MEMHP_F_KERNEL_MEMMAP;  // Linux 6.11+: nr_memmap_pages around the add
    add.kernel_memmap_before = 16384;
    add.kernel_memmap_after = 16384 + 512;
    s.consume(add);
    s.consume(op(MEMHP_EV_ONLINE, first_id + 1, 1, 2'000'000));
    s.consume(op(MEMHP_EV_OFFLINE, first_id + 2, 1, 4'000'000));
    s.consume(op(MEMHP_EV_REMOVE, first_id + 3, 1, 1'000'000));
    auto failed = op(MEMHP_EV_OFFLINE, first_id + 4, 0, 9'000'000, -EBUSY);
    failed.start_pfn = 0x8000;
    s.consume(failed);
}

HostState fixture_host(bool bpf_stats) {
    HostState h;
    h.block_size_bytes = 128ull << 20;
    h.blocks[{0, "online", "Normal"}] = 8;
    h.blocks[{1, "offline", "none"}] = 1;
    h.memmap_on_memory = "N";
    h.auto_online_policy = "offline";
    h.bpf_stats_enabled = bpf_stats;
    return h;
}

const prometheus::MetricFamily* family(const std::vector<prometheus::MetricFamily>& fams, const std::string& name) {
    for (const auto& f : fams)
        if (f.name == name) return &f;
    return nullptr;
}

std::string label(const prometheus::ClientMetric& m, const std::string& name) {
    for (const auto& l : m.label)
        if (l.name == name) return l.value;
    return "<absent>";
}

// ---- catalog and docs ----------------------------------------------------------

TEST(MetricCatalog, FollowsPrometheusNamingConventions) {
    std::set<std::string> names;
    const std::regex name_re("memhp_[a-z0-9_]+"), label_re("[a-z_][a-z0-9_]*");
    for (const auto& d : metric_catalog()) {
        EXPECT_TRUE(names.insert(d.name).second) << "duplicate " << d.name;
        EXPECT_TRUE(std::regex_match(d.name, name_re)) << d.name;
        EXPECT_EQ(d.kind == MetricKind::Counter, d.name.ends_with("_total")) << d.name << ": _total on counters only";
        if (d.kind == MetricKind::Histogram) {
            EXPECT_TRUE(d.name.ends_with("_seconds")) << d.name;
        }
        EXPECT_EQ(d.name.find("pages"), std::string::npos) << d.name << ": pages are served as bytes";
        EXPECT_FALSE(d.help.empty()) << d.name;
        std::set<std::string> labels;
        for (const auto& l : d.labels) {
            EXPECT_TRUE(std::regex_match(l, label_re)) << d.name << " " << l;
            EXPECT_FALSE(l.starts_with("__")) << l;
            EXPECT_NE(l, "le") << d.name;
            EXPECT_TRUE(labels.insert(l).second) << d.name << " repeats " << l;
        }
    }
}

TEST(MetricCatalog, DocsAreGeneratedAndCurrent) {
    const fs::path doc = fs::path(MEMHP_SOURCE_DIR) / "docs/metrics.md";
    auto text = try_read_file(doc);
    ASSERT_TRUE(text) << doc << " is missing: run build/bin/memhp-exporter --list-metrics > docs/metrics.md";
    EXPECT_EQ(*text, metrics_markdown())
        << "docs/metrics.md is stale: run build/bin/memhp-exporter --list-metrics > docs/metrics.md "
           "(or cmake --build build --target metrics-doc)";
    for (const auto& d : metric_catalog()) EXPECT_THAT(*text, HasSubstr("`" + d.name + "`"));
}

// ---- rendering -------------------------------------------------------------------

struct Rendered : ::testing::Test {
    void SetUp() override {
        state = std::make_unique<test::FakeLiveState>(std::make_unique<TwoNodes>());
        feed_cycle(*state, 1);
        feed_cycle(*state, 100);
        snap = state->snapshot(false);
        snap.dropped_events = 3;
        snap.interrupt_page_events = 7;
        snap.probes = {{"add_exit", "add_memory_resource", "fexit", true, true, ""},
                       {"populate_exit", "vmemmap_populate", "fexit", false, false, "notrace"}};
        snap.run_stats = {{"add_exit", 1'500'000'000, 42}};
        fams = build_families(snap, fixture_host(true));
    }
    std::unique_ptr<test::FakeLiveState> state;
    ProbeSnapshot snap;
    std::vector<prometheus::MetricFamily> fams;
};

TEST_F(Rendered, EveryCatalogFamilyIsServedWithItsLabels) {
    std::set<std::string> served;
    for (const auto& f : fams) {
        served.insert(f.name);
        const auto& def = metric_def(f.name);  // throws for a family outside the catalog
        EXPECT_EQ(f.help, def.help);
        for (const auto& m : f.metric) {
            ASSERT_EQ(m.label.size(), def.labels.size()) << f.name;
            for (std::size_t i = 0; i < def.labels.size(); ++i) EXPECT_EQ(m.label[i].name, def.labels[i]) << f.name;
        }
    }
    for (const auto& d : metric_catalog()) EXPECT_TRUE(served.count(d.name)) << d.name << " not served";
}

TEST_F(Rendered, MemmapPagesBecomeBytesWithLocality) {
    const auto* f = family(fams, "memhp_memmap_allocated_bytes_total");
    ASSERT_TRUE(f);
    bool remote_block = false;
    for (const auto& m : f->metric) {
        if (label(m, "source") == "page_allocator") {
            EXPECT_EQ(label(m, "node"), "1");
            EXPECT_EQ(label(m, "memmap_node"), "0");
            EXPECT_EQ(label(m, "locality"), "remote");
            EXPECT_DOUBLE_EQ(m.counter.value, 2 * 512 * 4096.0) << "two adds, one order-9 block each";
            remote_block = true;
        }
        if (label(m, "source") == "altmap") {
            EXPECT_EQ(label(m, "locality"), "local");
            EXPECT_DOUBLE_EQ(m.counter.value, 0);
        }
    }
    EXPECT_TRUE(remote_block);
    const auto* live = family(fams, "memhp_hotplugged_memory_bytes");
    ASSERT_TRUE(live);
    ASSERT_EQ(live->metric.size(), 1u);
    EXPECT_DOUBLE_EQ(live->metric[0].gauge.value, 0) << "added and removed twice";
}

// The kernel's nr_memmap_pages as bytes, and adds whose rise matched ours.
TEST_F(Rendered, KernelMemmapCountIsServedInBytes) {
    const auto* g = family(fams, "memhp_kernel_memmap_bytes");
    ASSERT_TRUE(g);
    ASSERT_EQ(g->metric.size(), 1u);
    EXPECT_DOUBLE_EQ(g->metric[0].gauge.value, (16384 + 512) * 4096.0);
    const auto* m = family(fams, "memhp_kernel_memmap_mismatches_total");
    ASSERT_TRUE(m);
    EXPECT_DOUBLE_EQ(m->metric.at(0).counter.value, 0) << "each add's rise was its 512 page-allocator pages";
    // Without the count (kernels before 6.11) the gauge has no sample.
    test::FakeLiveState plain(std::make_unique<TwoNodes>());
    plain.consume(op(MEMHP_EV_ADD, 1, 1, 1'000'000));
    const auto fams2 = build_families(plain.snapshot(false), fixture_host(false));
    const auto* g2 = family(fams2, "memhp_kernel_memmap_bytes");
    EXPECT_TRUE(!g2 || g2->metric.empty());
}

TEST_F(Rendered, FailuresCarryTheErrnoName) {
    const auto* f = family(fams, "memhp_operation_failures_total");
    ASSERT_TRUE(f);
    ASSERT_EQ(f->metric.size(), 1u);
    EXPECT_EQ(label(f->metric[0], "phase"), "offline");
    EXPECT_EQ(label(f->metric[0], "errno"), "EBUSY");
    EXPECT_DOUBLE_EQ(f->metric[0].counter.value, 2);
}

TEST_F(Rendered, HistogramBucketsAreCumulativeAtPowersOfTwo) {
    const auto* f = family(fams, "memhp_operation_duration_seconds");
    ASSERT_TRUE(f);
    bool seen_add = false;
    for (const auto& m : f->metric) {
        const auto& h = m.histogram;
        ASSERT_EQ(h.bucket.size(), kLastBucketLog2 - kFirstBucketLog2 + 2);
        EXPECT_DOUBLE_EQ(h.bucket.front().upper_bound, 1024e-9);
        EXPECT_TRUE(std::isinf(h.bucket.back().upper_bound));
        EXPECT_EQ(h.bucket.back().cumulative_count, h.sample_count);
        for (std::size_t i = 1; i < h.bucket.size(); ++i)
            EXPECT_LE(h.bucket[i - 1].cumulative_count, h.bucket[i].cumulative_count);
        if (label(m, "phase") == "add") {
            seen_add = true;
            EXPECT_EQ(label(m, "memmap_mode"), "page_allocator");
            EXPECT_EQ(h.sample_count, 2u);
            EXPECT_DOUBLE_EQ(h.sample_sum, 0.006);
            // 3 ms lies in (2^21, 2^22] ns: below le=2^21 ns nothing, from 2^22 ns on both.
            for (const auto& b : h.bucket) {
                if (b.upper_bound < 2097152e-9 * 1.0000001) {
                    EXPECT_EQ(b.cumulative_count, 0u) << b.upper_bound;
                }
                if (b.upper_bound > 4194304e-9 * 0.9999999) {
                    EXPECT_EQ(b.cumulative_count, 2u) << b.upper_bound;
                }
            }
        }
    }
    EXPECT_TRUE(seen_add);
}

TEST_F(Rendered, TextExpositionHasTheExpectedLines) {
    const std::string text = prometheus::TextSerializer().Serialize(fams);
    EXPECT_THAT(text, HasSubstr("# TYPE memhp_memmap_allocated_bytes_total counter"));
    EXPECT_THAT(text, HasSubstr("memhp_memmap_allocated_bytes_total{source=\"page_allocator\",node=\"1\","
                                "memmap_node=\"0\",locality=\"remote\"} 4194304"));
    EXPECT_THAT(text, HasSubstr("memhp_operation_duration_seconds_bucket{phase=\"add\","
                                "memmap_mode=\"page_allocator\",le=\"0.004194304\"} 2"));
    // Offlines on nodes 0 (failed) and 1 merge into one histogram.
    EXPECT_THAT(text, HasSubstr("memhp_operation_duration_seconds_count{phase=\"offline\","
                                "memmap_mode=\"page_allocator\"} 4"));
    EXPECT_THAT(text, HasSubstr("memhp_ring_buffer_dropped_events_total 3"));
    EXPECT_THAT(text, HasSubstr("memhp_interrupt_page_events_total 7"));
    EXPECT_THAT(text, HasSubstr("memhp_probe_attached{program=\"populate_exit\",target=\"vmemmap_populate\","
                                "attach_mode=\"fexit\"} 0"));
    EXPECT_THAT(text, HasSubstr("memhp_bpf_program_run_seconds_total{program=\"add_exit\"} 1.5"));
    EXPECT_THAT(text, HasSubstr("memhp_memory_blocks{node=\"1\",state=\"offline\",zone=\"none\"} 1"));
    EXPECT_THAT(text, HasSubstr("memhp_memory_auto_online_info{policy=\"offline\"} 1"));
}

TEST_F(Rendered, RunTimeOnlyWithBpfStatsEnabled) {
    const auto off = build_families(snap, fixture_host(false));
    EXPECT_FALSE(family(off, "memhp_bpf_program_run_seconds_total"));
    EXPECT_FALSE(family(off, "memhp_bpf_program_runs_total"));
    ASSERT_TRUE(family(off, "memhp_bpf_stats_enabled"));
    EXPECT_DOUBLE_EQ(family(off, "memhp_bpf_stats_enabled")->metric[0].gauge.value, 0);
}

TEST(Rendering, IdleExporterServesItsSelfMetrics) {
    test::FakeLiveState s(std::make_unique<TwoNodes>());
    const auto fams = build_families(s.snapshot(false), HostState{});
    for (const char* name : {"memhp_events_total", "memhp_ring_buffer_dropped_events_total", "memhp_build_info",
                             "memhp_memmap_on_memory_unused_total", "memhp_memmap_on_memory_enabled"})
        EXPECT_TRUE(family(fams, name)) << name;
    EXPECT_FALSE(family(fams, "memhp_operation_duration_seconds")) << "no empty families";
}

TEST(Rendering, ErrnoNames) {
    EXPECT_EQ(errno_name(EBUSY), "EBUSY");
    EXPECT_EQ(errno_name(ENOMEM), "ENOMEM");
    EXPECT_EQ(errno_name(100000), "100000");
}

// ---- host state from sysfs -------------------------------------------------------

TEST(SysfsHostSource, ReadsBlocksByNodeStateAndZone) {
    TempDir root("memhp-sysfs");
    const fs::path mem = root.path() / "sys/devices/system/memory";
    auto block = [&](int n, int node, const std::string& state, const std::string& zones) {
        const fs::path d = mem / ("memory" + std::to_string(n));
        fs::create_directories(d / ("node" + std::to_string(node)));
        write_file(d / "state", state + "\n");
        write_file(d / "valid_zones", zones + "\n");
    };
    block(0, 0, "online", "DMA32");
    block(1, 0, "online", "Normal");
    block(2, 0, "online", "Normal");
    block(32, 1, "online", "Movable");
    block(33, 1, "offline", "Normal Movable");
    block(34, 1, "going-offline", "Movable");
    fs::create_directories(mem / "memory_not_a_block");
    write_file(mem / "block_size_bytes", "8000000\n");
    write_file(mem / "auto_online_blocks", "online_movable\n");
    fs::create_directories(root.path() / "sys/module/memory_hotplug/parameters");
    write_file(root.path() / "sys/module/memory_hotplug/parameters/memmap_on_memory", "Y\n");
    fs::create_directories(root.path() / "proc/sys/kernel");
    write_file(root.path() / "proc/sys/kernel/bpf_stats_enabled", "1\n");

    const HostState h = SysfsHostSource(root.path()).read();
    EXPECT_EQ(h.block_size_bytes, 128ull << 20);
    EXPECT_EQ(h.memmap_on_memory, "Y");
    EXPECT_EQ(h.auto_online_policy, "online_movable");
    EXPECT_EQ(h.bpf_stats_enabled, true);
    const std::map<std::tuple<int, std::string, std::string>, std::uint64_t> want = {{{0, "online", "DMA32"}, 1},
                                                                                     {{0, "online", "Normal"}, 2},
                                                                                     {{1, "online", "Movable"}, 1},
                                                                                     {{1, "offline", "none"}, 1},
                                                                                     {{1, "going-offline", "none"}, 1}};
    EXPECT_EQ(h.blocks, want);
}

TEST(SysfsHostSource, MissingTreeGivesEmptyState) {
    TempDir root("memhp-sysfs");
    const HostState h = SysfsHostSource(root.path()).read();
    EXPECT_FALSE(h.block_size_bytes);
    EXPECT_TRUE(h.blocks.empty());
    EXPECT_FALSE(h.memmap_on_memory);
    const auto fams = build_families(ProbeSnapshot{}, h);
    EXPECT_FALSE(family(fams, "memhp_memory_block_size_bytes"));
    EXPECT_DOUBLE_EQ(family(fams, "memhp_memmap_on_memory_enabled")->metric[0].gauge.value, 0);
}

// ---- scrapes and event consumption ---------------------------------------------

// A host source that blocks inside the scrape until released.
class StalledHost : public HostSource {
public:
    HostState read() override {
        std::unique_lock lock(mu_);
        entered_ = true;
        cv_.notify_all();
        cv_.wait(lock, [this] { return released_; });
        return HostState{};
    }
    bool wait_entered(std::chrono::seconds limit) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, limit, [this] { return entered_; });
    }
    void release() {
        std::lock_guard lock(mu_);
        released_ = true;
        cv_.notify_all();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool entered_ = false;
    bool released_ = false;
};

// While a scrape is stuck mid-way (slow sysfs, slow client), the ring-buffer
// side must keep consuming: 200k events go through before the scrape ends.
TEST(LiveState, ScrapeInProgressDoesNotBlockEventConsumption) {
    auto state = std::make_shared<test::FakeLiveState>(std::make_unique<TwoNodes>());
    auto host = std::make_shared<StalledHost>();
    MetricsCollectable collectable(state, host);
    auto scrape = std::async(std::launch::async, [&] { return collectable.Collect(); });
    ASSERT_TRUE(host->wait_entered(std::chrono::seconds(10)));

    constexpr std::uint64_t kEvents = 200'000;
    auto consumer = std::async(std::launch::async, [&] {
        for (std::uint64_t i = 0; i < kEvents; ++i) state->consume(page_alloc(i / 4 + 1, 0x10000, 0));
    });
    const bool consumed = consumer.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
    host->release();  // let the scrape finish either way, so the test can end
    EXPECT_TRUE(consumed) << "event consumption stalled behind an unfinished scrape";
    consumer.wait();
    EXPECT_EQ(state->events(), kEvents);
    const auto fams = scrape.get();
    const auto* events = family(fams, "memhp_events_total");
    ASSERT_TRUE(events);
    EXPECT_GE(events->metric[0].counter.value, kEvents) << "the snapshot is taken after the slow part";
}

TEST(LiveState, ConcurrentScrapesAndConsumptionStayConsistent) {
    auto state = std::make_shared<test::FakeLiveState>(std::make_unique<TwoNodes>());
    MetricsCollectable collectable(state, std::make_shared<SysfsHostSource>("/nonexistent"));
    std::atomic<bool> done = false;
    std::thread consumer([&] {
        for (std::uint64_t c = 0; c < 2000; ++c) feed_cycle(*state, 10 * c + 1);
        done = true;
    });
    double last_events = 0;
    int scrapes = 0;
    while (!done || scrapes < 5) {
        const auto fams = collectable.Collect();
        const double events = family(fams, "memhp_events_total")->metric[0].counter.value;
        EXPECT_GE(events, last_events) << "counters never go backwards";
        last_events = events;
        ++scrapes;
    }
    consumer.join();
    const auto fams = collectable.Collect();
    for (const auto& m : family(fams, "memhp_memmap_allocated_bytes_total")->metric)
        if (label(m, "source") == "page_allocator") {
            EXPECT_DOUBLE_EQ(m.counter.value, 2000 * 512 * 4096.0);
        }
}

// ---- --listen ----------------------------------------------------------------------

TEST(ParseListen, Accepts) {
    auto a = parse_listen("127.0.0.1:10466");
    EXPECT_EQ(a.host, "127.0.0.1");
    EXPECT_EQ(a.port, 10466);
    EXPECT_EQ(a.civetweb(), "127.0.0.1:10466");
    auto b = parse_listen("[::1]:0");
    EXPECT_TRUE(b.ipv6);
    EXPECT_EQ(b.civetweb(), "[::1]:0");
    EXPECT_EQ(b.url(8080), "http://[::1]:8080/metrics");
    EXPECT_EQ(parse_listen(kDefaultListen).host, "127.0.0.1") << "loopback by default";
}

TEST(ParseListen, RejectsWithAnExample) {
    for (const char* bad : {"10466", ":10466", "localhost:10466", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:http",
                            "[::1]10466", "300.1.1.1:80", "[127.0.0.1]:80"}) {
        try {
            (void)parse_listen(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const UsageError& e) {
            EXPECT_THAT(e.what(), HasSubstr("127.0.0.1:10466")) << bad;
        }
    }
}

}  // namespace
}  // namespace memhp::exporter

namespace memhp::exporter {
namespace {

TEST_F(Rendered, NestedOperationsAndStaleOpsAreServed) {
    snap.stats.nested[{collector::Phase::Online, collector::Phase::Add}] = 8;
    snap.op_health.stale_missed_exit = 2;
    snap.op_health.swept_task_gone = 1;
    snap.op_health.swept_too_old = 4;
    snap.op_health.ops_map_full = 5;
    snap.op_health.nest_overflow = 6;
    const std::string text = prometheus::TextSerializer().Serialize(build_families(snap, fixture_host(true)));
    EXPECT_THAT(text, HasSubstr("memhp_nested_operations_total{phase=\"online\",parent_phase=\"add\"} 8"));
    EXPECT_THAT(text, HasSubstr("memhp_stale_operations_total{reason=\"missed_exit\"} 2"));
    EXPECT_THAT(text, HasSubstr("memhp_stale_operations_total{reason=\"task_gone\"} 1"));
    EXPECT_THAT(text, HasSubstr("memhp_stale_operations_total{reason=\"too_old\"} 4"));
    EXPECT_THAT(text, HasSubstr("memhp_untraced_operations_total{reason=\"ops_map_full\"} 5"));
    EXPECT_THAT(text, HasSubstr("memhp_untraced_operations_total{reason=\"nested_too_deep\"} 6"));
}

}  // namespace
}  // namespace memhp::exporter
