// SPDX-License-Identifier: Apache-2.0
// Aggregator::consume() throughput on a synthetic but realistic event stream:
// per hot-plug cycle of one 128 MiB block (Debian 6.1, memmap_on_memory=0),
//   add:    PAGE_ALLOC order 9 (memmap, node 0), PAGE_ALLOC order 0 (page table), ADD
//   online: ONLINE
//   offline: OFFLINE
//   remove: PAGE_FREE order 9, PAGE_FREE order 0, REMOVE
// i.e. 8 records per cycle, fed as raw ring-buffer bytes through consume(span).
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "memhp/collector/aggregator.hpp"

namespace {

using memhp::collector::Aggregator;
using memhp::collector::AggregatorConfig;
using memhp::collector::NodeResolver;
using memhp::collector::Operation;
using memhp::collector::OperationSink;

constexpr std::uint64_t kBlockPages = 32768;
constexpr std::uint64_t kNode1Start = 0x100000;  // 4 GiB: node 1 above, node 0 below

class FakeNodes : public NodeResolver {
public:
    int node_of_pfn(std::uint64_t pfn) override { return pfn < kNode1Start ? 0 : 1; }
};

// What a trace printer or exporter does at least: look at each operation.
class CountingSink : public OperationSink {
public:
    void on_operation(const Operation& op) override {
        ++ops;
        bytes += op.memmap.buddy_pages + op.memmap.pagetable_pages;
    }
    std::uint64_t ops = 0;
    std::uint64_t bytes = 0;
};

memhp_event make(std::uint32_t type, std::uint64_t op_id, std::uint64_t ts) {
    memhp_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.op_id = op_id;
    ev.tid = 1234;
    ev.ts_ns = ts;
    ev.nid = -1;
    return ev;
}

// `cycles` add/online/offline/remove cycles over `ranges` distinct blocks on node 1.
std::vector<memhp_event> make_stream(std::size_t cycles, std::size_t ranges) {
    std::vector<memhp_event> out;
    out.reserve(cycles * 8);
    std::uint64_t op = 1;
    std::uint64_t ts = 1'000'000;
    for (std::size_t c = 0; c < cycles; ++c) {
        const std::uint64_t start = 2 * kNode1Start + (c % ranges) * kBlockPages;
        const std::uint64_t memmap_pfn = 0x10000 + (c % 64) * 512;
        const std::uint64_t pt_pfn = 0x20000 + c % 4096;

        auto alloc = make(MEMHP_EV_PAGE_ALLOC, op, ts++);
        alloc.pfn = memmap_pfn;
        alloc.order = 9;
        alloc.op_type = MEMHP_EV_ADD;
        out.push_back(alloc);
        alloc.pfn = pt_pfn;
        alloc.order = 0;
        out.push_back(alloc);
        auto add = make(MEMHP_EV_ADD, op++, ts++);
        add.nid = 1;
        add.start_pfn = start;
        add.nr_pages = kBlockPages;
        add.duration_ns = 4'000'000 + c % 100'000;
        out.push_back(add);

        for (std::uint32_t type : {MEMHP_EV_ONLINE, MEMHP_EV_OFFLINE}) {
            auto ev = make(type, op++, ts++);
            ev.start_pfn = start;
            ev.nr_pages = kBlockPages;
            ev.duration_ns = 1'500'000 + c % 50'000;
            std::strncpy(ev.zone, "Movable", sizeof ev.zone);
            out.push_back(ev);
        }

        auto free = make(MEMHP_EV_PAGE_FREE, op, ts++);
        free.pfn = memmap_pfn;
        free.order = 9;
        free.op_type = MEMHP_EV_REMOVE;
        out.push_back(free);
        free.pfn = pt_pfn;
        free.order = 0;
        out.push_back(free);
        auto rm = make(MEMHP_EV_REMOVE, op++, ts++);
        rm.start_pfn = start;
        rm.nr_pages = kBlockPages;
        rm.duration_ns = 3'000'000 + c % 70'000;
        out.push_back(rm);
    }
    return out;
}

void BM_ConsumeRealisticStream(benchmark::State& state) {
    const auto stream = make_stream(static_cast<std::size_t>(state.range(0)), 16);
    FakeNodes nodes;
    CountingSink sink;
    Aggregator agg(nodes, AggregatorConfig{});
    agg.add_sink(&sink);
    for (auto _ : state) {
        for (const auto& ev : stream)
            agg.consume(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(&ev), sizeof ev));
    }
    benchmark::DoNotOptimize(sink.bytes);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size() * sizeof(memhp_event)));
    state.counters["decode_errors"] = static_cast<double>(agg.stats().decode_errors);
    state.counters["orphans"] = static_cast<double>(agg.stats().orphan_page_events);
}
BENCHMARK(BM_ConsumeRealisticStream)->Arg(1024);

// Lower bound: the decode path alone (records of an unknown type are rejected
// after the copy and the checks).
void BM_ConsumeDecodeOnly(benchmark::State& state) {
    auto ev = make(0, 1, 1);
    FakeNodes nodes;
    Aggregator agg(nodes, AggregatorConfig{});
    const std::span<const std::uint8_t> raw(reinterpret_cast<const std::uint8_t*>(&ev), sizeof ev);
    for (auto _ : state) agg.consume(raw);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_ConsumeDecodeOnly);

}  // namespace

BENCHMARK_MAIN();
