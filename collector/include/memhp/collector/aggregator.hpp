// SPDX-License-Identifier: Apache-2.0
#pragma once
// From raw probe events to hot-plug operations and their aggregates. No I/O
// policy here: completed operations go to OperationSinks (the trace printer,
// the exporter, the bench), aggregates are read with snapshot().
#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <linux/types.h>

#include "memhp/collector/op_health.hpp"
#include "memhp_event.h"

namespace memhp::collector {

static_assert(sizeof(memhp_event) == 376 && MEMHP_EVENT_VERSION == 7,
              "memhp_event layout changed: bump MEMHP_EVENT_VERSION and the decoder");

enum class Phase { Add, Populate, Online, Offline, Remove };
inline constexpr std::array<Phase, 5> kAllPhases = {Phase::Add, Phase::Populate, Phase::Online, Phase::Offline,
                                                    Phase::Remove};
[[nodiscard]] const char* phase_name(Phase p);  // "add", "populate", "online", "offline", "remove"

// Where memmap pages came from.
enum class MemmapSource { Altmap, PageAllocator, PageTables };
[[nodiscard]] const char* source_name(MemmapSource s);  // "altmap", "page_allocator", "page_tables"

// Memmap mode of the memory an operation concerns.
enum class MemmapMode { Altmap, PageAllocator };
[[nodiscard]] const char* mode_name(MemmapMode m);  // "altmap", "page_allocator"

struct MemmapSplit {
    std::uint64_t altmap_pages = 0;     // carved from the added range
    std::uint64_t buddy_pages = 0;      // memmap from the page allocator (usually PMD-sized, order 9 on x86)
    std::uint64_t pagetable_pages = 0;  // page tables (the vmemmap's, the direct map's) from the page allocator
    std::uint64_t other_pages = 0;      // any other page-allocator pages taken during the op (slab, sysfs, ...)
    std::uint64_t local_pages = 0;      // memmap pages (altmap + buddy) on the node they serve
    std::uint64_t remote_pages = 0;     // memmap pages (buddy) on another node
    // add: the part of buddy_pages allocated below the PMD block order (the
    // vmemmap mapped with base pages: vmemmap_populate_basepages, the
    // fallback when no PMD-sized block was free). Known only with call sites.
    std::uint64_t base_pages = 0;
};

// One completed hot-plug operation.
struct Operation {
    Phase phase = Phase::Add;
    std::uint64_t op_id = 0;
    std::uint32_t tid = 0;
    std::uint64_t ts_ns = 0;
    // The op's own time: inclusive_ns minus the nested ops that ran inside
    // it (an add's auto-online), so `add` means the same with and without.
    std::uint64_t duration_ns = 0;
    std::uint64_t inclusive_ns = 0;  // from its first function's entry to its exit
    std::uint64_t nested_ns = 0;     // time in nested ops
    std::uint32_t nested_ops = 0;    // how many ran inside this op
    std::uint64_t parent_op_id = 0;  // the op this one ran inside, 0 for none
    std::optional<Phase> parent_phase;
    int nid = -1;
    int ret = 0;  // 0 or -errno
    std::uint64_t start_pfn = 0;
    std::uint64_t nr_pages = 0;
    std::uint64_t mhp_flags = 0;
    std::string caller;  // add: "add_memory" | "driver_managed"
    MemmapMode mode = MemmapMode::PageAllocator;
    bool populate_direct = false;     // populate: measured at vmemmap_populate (else inferred)
    MemmapSplit memmap;               // add: pages taken; remove: pages given back
    std::uint64_t vmemmap_pages = 0;  // online/offline
    std::string zone;                 // online/offline
    // add: page-allocator bytes the add consumed before the memory was online;
    // online/offline: bytes taken from the page allocator during the phase.
    // Own, as duration_ns: pages taken during a nested op are billed to it.
    std::uint64_t free_bytes_consumed = 0;
    // add/remove: the same including the nested ops (when they came first)
    std::uint64_t free_bytes_consumed_inclusive = 0;
    // add: memmap_on_memory is enabled but this add did not use it
    bool memmap_on_memory_unused = false;
    std::string unused_reason;
    // add/remove: page-allocator pages whose node was read both ways (sysfs
    // memory-block map and page->flags in BPF), and how many disagreed.
    std::uint64_t node_checked_pages = 0;
    std::uint64_t node_mismatched_pages = 0;
    // add, on the patched kernels: the kernel's own mhp_memmap_alloc events
    // were seen, and `memmap` holds the classes they report (block by
    // block: altmap, huge block or base page, the node asked for and the
    // node obtained) instead of the page events' guess by order.
    struct MemmapEvents {
        std::uint64_t altmap_pages = 0;
        std::uint64_t buddy_pages = 0;
        std::uint64_t remote_pages = 0;
        std::uint64_t base_pages = 0;
        std::uint32_t failed_blocks = 0;
        // What the page events would have said: PMD-order pages taken.
        std::uint64_t page_event_huge_pages = 0;
        // The two agree: huge pages from the page events == buddy - base
        // from the events, and altmap pages == the add end's count.
        bool agree = true;
    };
    std::optional<MemmapEvents> memmap_events;
    // add/remove on Linux 6.11+: the kernel's own memmap count
    // (/proc/vmstat nr_memmap_pages, altmap and page-allocator pages alike)
    // at the op's begin and end, against memhp's altmap + buddy pages.
    struct KernelMemmap {
        std::int64_t before = 0, after = 0;
        std::int64_t memhp_pages = 0;  // what memhp counted: + for an add, - for a remove
        [[nodiscard]] std::int64_t delta() const { return after - before; }
        [[nodiscard]] bool matches() const { return delta() == memhp_pages; }
    };
    std::optional<KernelMemmap> kernel_memmap;
    // The op's own time split among the kernel functions timed inside it
    // (event v6, function probes only), each exclusive of the others, so the
    // values add up to duration_ns: "other" is the time outside all of them.
    // Slots that saw no time are left out; empty when not measured.
    std::vector<std::pair<std::string, std::uint64_t>> sub_phases_ns;
    bool sub_phases_unbalanced = false;  // a timed function's exit was missed
    // The zone as move_pfn_range_to_zone() found it (before growing it).
    struct ZoneSpan {
        std::uint64_t start_pfn = 0, spanned_pages = 0;
    };
    std::optional<ZoneSpan> zone_span;
};

// The name of sub-phase slot `slot` (enum memhp_sub): "other" for
// MEMHP_SUB_OWN, else the kernel function's name.
[[nodiscard]] const char* sub_phase_name(unsigned slot);

// The node a pfn lives on.
class NodeResolver {
public:
    virtual ~NodeResolver() = default;
    [[nodiscard]] virtual int node_of_pfn(std::uint64_t pfn) = 0;  // -1 when unknown
};

// Reads <sys_root>/sys/devices/system/memory: block_size_bytes and the nodeN
// link of each memoryB directory. Caches the map; re-reads once on a miss.
class SysfsNodeResolver : public NodeResolver {
public:
    explicit SysfsNodeResolver(std::filesystem::path sys_root = "/", std::uint64_t page_size = 4096);
    [[nodiscard]] int node_of_pfn(std::uint64_t pfn) override;
    [[nodiscard]] std::uint64_t block_size_bytes() const { return block_size_; }
    void refresh();

private:
    std::filesystem::path root_;
    std::uint64_t page_size_;
    std::uint64_t block_size_ = 0;
    std::map<std::uint64_t, int> block_node_;
};

class OperationSink {
public:
    virtual ~OperationSink() = default;
    virtual void on_operation(const Operation& op) = 0;
};

// Log2 latency histogram whose bucket upper bounds line up with Prometheus
// `le`: bucket i counts durations d with 2^(i-1) < d <= 2^i nanoseconds
// (bucket 0: d <= 1 ns); the last bucket is +Inf.
class Log2Histogram {
public:
    static constexpr std::size_t kBuckets = 40;  // up to 2^38 ns (~275 s), then +Inf
    void observe(std::uint64_t ns);
    [[nodiscard]] static std::size_t bucket_of(std::uint64_t ns);
    [[nodiscard]] static double upper_bound_seconds(std::size_t bucket);                           // +inf for the last
    [[nodiscard]] const std::array<std::uint64_t, kBuckets>& buckets() const { return buckets_; }  // not cumulative
    [[nodiscard]] std::uint64_t count() const { return count_; }
    [[nodiscard]] std::uint64_t sum_ns() const { return sum_ns_; }

private:
    std::array<std::uint64_t, kBuckets> buckets_{};
    std::uint64_t count_ = 0;
    std::uint64_t sum_ns_ = 0;
};

struct Stats {
    // (phase, node, mode) -> latency
    std::map<std::tuple<Phase, int, MemmapMode>, Log2Histogram> latency;
    // (phase, node, mode) -> operations (successful or not)
    std::map<std::tuple<Phase, int, MemmapMode>, std::uint64_t> operations;
    // (phase, errno as a positive number) -> failures
    std::map<std::tuple<Phase, int>, std::uint64_t> failures;
    // (source, serving node, actual node) -> memmap pages taken by adds
    std::map<std::tuple<MemmapSource, int, int>, std::uint64_t> memmap_pages;
    // node -> page-allocator bytes consumed by adds before online
    std::map<int, std::uint64_t> free_bytes_consumed;
    // (phase, parent phase) -> ops that ran nested in another (auto-online)
    std::map<std::tuple<Phase, Phase>, std::uint64_t> nested;
    // live: node -> hot-plugged bytes present (added and not yet removed)
    std::map<int, std::int64_t> present_bytes;
    // live: (source, node where the memmap sits) -> memmap bytes of present hot-plugged memory
    std::map<std::tuple<MemmapSource, int>, std::int64_t> memmap_bytes;
    std::uint64_t memmap_on_memory_unused = 0;
    std::uint64_t events = 0;
    std::uint64_t decode_errors = 0;
    std::uint64_t orphan_page_events = 0;          // page events whose op never completed (bounded buffer)
    std::uint64_t node_mismatched_pages = 0;       // sysfs and page->flags disagreed on a page's node
    std::uint64_t memmap_event_disagreements = 0;  // adds whose mhp_memmap_alloc sums and page events differ
    // nr_memmap_pages after the last add/remove memhp saw (6.11+), and the
    // adds/removes whose rise or fall differed from memhp's own count.
    std::optional<std::int64_t> kernel_memmap_pages;
    std::uint64_t kernel_memmap_mismatches = 0;
};

struct AggregatorConfig {
    bool memmap_on_memory_enabled = false;  // the kernel's memmap_on_memory parameter
    std::uint64_t block_size_bytes = 128ull << 20;
    std::uint64_t page_size = 4096;
    unsigned memmap_block_order = 9;  // PMD-sized memmap blocks (x86-64: order 9)
};

class Aggregator {
public:
    Aggregator(NodeResolver& nodes, AggregatorConfig cfg);
    void add_sink(OperationSink* sink);
    // Decodes one ring-buffer record; counts a decode error for a wrong size or type.
    void consume(std::span<const std::uint8_t> raw);
    void consume(const memhp_event& ev);
    [[nodiscard]] const Stats& stats() const { return stats_; }

private:
    // One buffered PAGE_ALLOC/PAGE_FREE, reduced to what the end event needs.
    struct PageRecord {
        std::uint64_t pfn = 0;
        std::uint32_t order = 0;
        std::uint32_t type = 0;      // MEMHP_EV_PAGE_ALLOC | MEMHP_EV_PAGE_FREE
        std::int32_t page_nid = -1;  // from page->flags
        std::uint32_t site = MEMHP_SITE_UNKNOWN;
    };
    // Page events of an op still in flight.
    struct Pending {
        std::uint64_t seq = 0;  // arrival order of the op's first page event (eviction order)
        std::vector<PageRecord> pages;
    };
    // A successful add not yet removed: what remove and online/offline need.
    struct AddedRange {
        std::uint64_t nr_pages = 0;
        int nid = -1;
        MemmapMode mode = MemmapMode::PageAllocator;
        // The exact contributions the add made to Stats::memmap_bytes.
        std::vector<std::pair<std::tuple<MemmapSource, int>, std::int64_t>> memmap_bytes;
    };
    static constexpr std::size_t kMaxPendingOps = 4096;
    static constexpr std::size_t kMaxPageEventsPerOp = 65536;

    void handle(const memhp_event& ev);
    void buffer_page_event(const memhp_event& ev);
    [[nodiscard]] std::vector<PageRecord> take_pages(std::uint64_t op_id);
    [[nodiscard]] const AddedRange* range_containing(std::uint64_t pfn) const;
    void on_add(const memhp_event& ev);
    struct AddPages;
    // The add's page events billed to `op` (memmap by source and node, page
    // tables, other pages), with its pages taken and freed.
    [[nodiscard]] AddPages bill_add_pages(const memhp_event& ev, Operation& op);
    void record_add(const memhp_event& ev, const Operation& op, const AddPages& pages);
    void apply_memmap_events(const memhp_event& ev, Operation& op);
    void kernel_memmap(const memhp_event& ev, Operation& op, int sign);
    void on_populate(const memhp_event& ev);
    void on_online_offline(const memhp_event& ev, Phase phase);
    void on_remove(const memhp_event& ev);
    void count(const Operation& op);  // operations, latency, failures, nesting
    // The nesting fields of `op` from its end event; a nested op's net pages
    // are remembered for its parent.
    void nesting(const memhp_event& ev, Operation& op);
    void remember_nested_pages(const Operation& op, std::uint64_t taken, std::uint64_t freed);
    // Net page-allocator pages of the nested ops of `parent_id` (forgotten).
    [[nodiscard]] std::int64_t take_nested_pages(std::uint64_t parent_id);
    // The page's node from sysfs, cross-checked against page->flags.
    int page_node(const PageRecord& p, Operation& op);
    void emit(const Operation& op);

    NodeResolver& nodes_;
    AggregatorConfig cfg_;
    std::vector<OperationSink*> sinks_;
    Stats stats_;
    std::unordered_map<std::uint64_t, Pending> pending_;    // op_id -> page events
    std::map<std::uint64_t, std::uint64_t> pending_order_;  // seq -> op_id, oldest first
    std::uint64_t next_seq_ = 0;
    std::map<std::uint64_t, AddedRange> ranges_;  // start_pfn of an added range -> its record
    // parent op id -> net pages its nested ops took (ids grow: the oldest go first)
    std::map<std::uint64_t, std::int64_t> nested_pages_;
};

// The versioned NDJSON schema of `memhp trace --json` (docs/trace-json.md).
// 3: nested phases (duration_ns is the op's own time; inclusive_ns,
// nested_ns, nested_ops, parent_op_id, parent_phase). Readers accept 2 and 3.
inline constexpr int kTraceJsonSchema = 4;
inline constexpr int kTraceJsonOldestSchema = 2;
[[nodiscard]] nlohmann::json to_json(const Operation& op);

// What a trace lost: the last record of `memhp trace --json` (schema 4,
// `"record":"summary"`, docs/trace-json.md) and the text summary's counts.
// Any of them non-zero means some operation or part of one is missing from
// the records, and `memhp ab`'s gate refuses to judge the arm.
struct TraceLosses {
    std::uint64_t dropped_events = 0;      // the ring buffer was full
    std::uint64_t decode_errors = 0;       // records that did not decode
    std::uint64_t orphan_page_events = 0;  // page events whose op never completed
    std::uint64_t stale_ops = 0;           // ops aged out: their exit never came (OpHealth)
    std::uint64_t untraced_ops = 0;        // begins BPF could not track (map full, nested too deep)
    [[nodiscard]] bool any() const {
        return dropped_events || decode_errors || orphan_page_events || stale_ops || untraced_ops;
    }
};
[[nodiscard]] TraceLosses trace_losses(const Stats& s, std::uint64_t dropped_events, const OpHealth& health);
// The summary record: `losses` plus the event count and the op-state detail.
[[nodiscard]] nlohmann::json summary_to_json(const Stats& s, const TraceLosses& losses, const OpHealth& health,
                                             std::uint64_t interrupt_page_events);

}  // namespace memhp::collector
