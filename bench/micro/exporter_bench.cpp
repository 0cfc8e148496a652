// SPDX-License-Identifier: Apache-2.0
// /metrics render time with a large state (bench/micro/exporter_large_state.hpp):
// the families built from a snapshot (what Collect() does after its copy) and
// then serialized to the text format (what the Exposer does), separately and
// together; plus the snapshot copy itself, the only part under the lock.
// Counters: series served, bytes of text, and the process's peak RSS.
#include <benchmark/benchmark.h>
#include <prometheus/text_serializer.h>

#include <fstream>
#include <string>

#include "exporter_large_state.hpp"

namespace {

double peak_rss_mib() {
    std::ifstream in("/proc/self/status");
    std::string key;
    while (in >> key) {
        if (key == "VmHWM:") {
            double kb = 0;
            in >> kb;
            return kb / 1024;
        }
        in.ignore(1 << 12, '\n');
    }
    return 0;
}

std::size_t samples(const std::vector<prometheus::MetricFamily>& fams) {
    std::size_t n = 0;
    for (const auto& f : fams)
        for (const auto& m : f.metric)
            n += f.type == prometheus::MetricType::Histogram ? m.histogram.bucket.size() + 2 : 1;
    return n;
}

void BM_SnapshotCopy(benchmark::State& state) {
    const auto snap = memhp::bench::large_snapshot();
    for (auto _ : state) {
        auto copy = snap.stats;  // LiveState::snapshot(): the copy taken under the lock
        benchmark::DoNotOptimize(copy);
    }
}
BENCHMARK(BM_SnapshotCopy)->Unit(benchmark::kMicrosecond);

void BM_BuildFamilies(benchmark::State& state) {
    const auto snap = memhp::bench::large_snapshot();
    const auto host = memhp::bench::large_host();
    std::size_t n = 0;
    for (auto _ : state) {
        auto fams = memhp::exporter::build_families(snap, host);
        n = samples(fams);
        benchmark::DoNotOptimize(fams);
    }
    state.counters["samples"] = static_cast<double>(n);
}
BENCHMARK(BM_BuildFamilies)->Unit(benchmark::kMicrosecond);

void BM_Serialize(benchmark::State& state) {
    const auto fams = memhp::exporter::build_families(memhp::bench::large_snapshot(), memhp::bench::large_host());
    std::size_t bytes = 0;
    for (auto _ : state) {
        auto text = prometheus::TextSerializer().Serialize(fams);
        bytes = text.size();
        benchmark::DoNotOptimize(text);
    }
    state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Serialize)->Unit(benchmark::kMicrosecond);

// The whole /metrics render: copy + build + serialize.
void BM_RenderMetrics(benchmark::State& state) {
    const auto snap = memhp::bench::large_snapshot();
    const auto host = memhp::bench::large_host();
    std::size_t bytes = 0;
    for (auto _ : state) {
        auto copy = snap;
        auto text = prometheus::TextSerializer().Serialize(memhp::exporter::build_families(copy, host));
        bytes = text.size();
        benchmark::DoNotOptimize(text);
    }
    state.counters["bytes"] = static_cast<double>(bytes);
    state.counters["peak_rss_MiB"] = peak_rss_mib();
}
BENCHMARK(BM_RenderMetrics)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
