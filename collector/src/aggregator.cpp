// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/aggregator.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace memhp::collector {

namespace {
// MHP_MEMMAP_ON_MEMORY in the kernel's mhp_t.
constexpr std::uint64_t kMhpMemmapOnMemory = 1ull << 1;

bool valid_type(std::uint32_t type) { return type >= MEMHP_EV_ADD && type <= MEMHP_EV_PAGE_FREE; }

std::optional<Phase> phase_of_type(std::uint32_t type) {
    switch (type) {
        case MEMHP_EV_ADD: return Phase::Add;
        case MEMHP_EV_POPULATE: return Phase::Populate;
        case MEMHP_EV_ONLINE: return Phase::Online;
        case MEMHP_EV_OFFLINE: return Phase::Offline;
        case MEMHP_EV_REMOVE: return Phase::Remove;
        default: return std::nullopt;
    }
}

constexpr std::size_t kMaxNestedParents = 4096;

MemmapMode mode_of_flags(std::uint32_t flags) {
    return (flags & MEMHP_F_ALTMAP) ? MemmapMode::Altmap : MemmapMode::PageAllocator;
}

// The fields every operation carries, straight from its end event.
Operation base_operation(Phase phase, const memhp_event& ev) {
    Operation op;
    op.phase = phase;
    op.op_id = ev.op_id;
    op.tid = ev.tid;
    op.ts_ns = ev.ts_ns;
    op.duration_ns = ev.duration_ns;
    op.inclusive_ns = ev.duration_ns;
    op.nid = ev.nid;
    op.ret = ev.ret;
    op.start_pfn = ev.start_pfn;
    op.nr_pages = ev.nr_pages;
    if (ev.flags & MEMHP_F_SUB_PHASES) {
        for (unsigned i = 0; i < MEMHP_SUB_SLOTS; ++i)
            if (ev.sub_ns[i] || i == MEMHP_SUB_OWN) op.sub_phases_ns.emplace_back(sub_phase_name(i), ev.sub_ns[i]);
        op.sub_phases_unbalanced = (ev.flags & MEMHP_F_SUB_UNBALANCED) != 0;
    }
    if (ev.flags & MEMHP_F_ZONE_SPAN) op.zone_span = Operation::ZoneSpan{ev.zone_start_pfn, ev.zone_spanned_pages};
    return op;
}

// Memmap pages per node where they sit; an op touches one or two nodes, so a
// flat vector beats a map.
struct NodePages {
    int node = -1;
    std::uint64_t buddy = 0;
    std::uint64_t pagetable = 0;
};

NodePages& node_entry(std::vector<NodePages>& nodes, int node) {
    for (auto& n : nodes)
        if (n.node == node) return n;
    nodes.push_back(NodePages{node, 0, 0});
    return nodes.back();
}

std::int64_t as_bytes(std::uint64_t pages, std::uint64_t page_size) {
    return static_cast<std::int64_t>(pages * page_size);
}
}  // namespace

const char* sub_phase_name(unsigned slot) {
    switch (slot) {
        case MEMHP_SUB_OWN: return "other";
        case MEMHP_SUB_ARCH_ADD_MEMORY: return "arch_add_memory";
        case MEMHP_SUB_VMEMMAP_POPULATE: return "vmemmap_populate";
        case MEMHP_SUB_INIT_MEMORY_MAPPING: return "init_memory_mapping";
        case MEMHP_SUB_CREATE_MEMORY_BLOCK_DEVICES: return "create_memory_block_devices";
        case MEMHP_SUB_ONLINE_PAGES: return "online_pages";
        case MEMHP_SUB_MOVE_PFN_RANGE_TO_ZONE: return "move_pfn_range_to_zone";
        case MEMHP_SUB_MEMMAP_INIT_RANGE: return "memmap_init_range";
        case MEMHP_SUB_SET_ZONE_CONTIGUOUS: return "set_zone_contiguous";
        case MEMHP_SUB_BUILD_ALL_ZONELISTS: return "build_all_zonelists";
        case MEMHP_SUB_INIT_PER_ZONE_WMARK_MIN: return "init_per_zone_wmark_min";
        case MEMHP_SUB_MEMORY_NOTIFY: return "memory_notify";
        case MEMHP_SUB_UNDO_ISOLATE_PAGE_RANGE: return "undo_isolate_page_range";
        case MEMHP_SUB_KSWAPD_RUN: return "kswapd_run";
        case MEMHP_SUB_KCOMPACTD_RUN: return "kcompactd_run";
        case MEMHP_SUB_MHP_INIT_MEMMAP_ON_MEMORY: return "mhp_init_memmap_on_memory";
        default: return "unknown";
    }
}

const char* phase_name(Phase p) {
    switch (p) {
        case Phase::Add: return "add";
        case Phase::Populate: return "populate";
        case Phase::Online: return "online";
        case Phase::Offline: return "offline";
        case Phase::Remove: return "remove";
    }
    return "unknown";
}

const char* source_name(MemmapSource s) {
    switch (s) {
        case MemmapSource::Altmap: return "altmap";
        case MemmapSource::PageAllocator: return "page_allocator";
        case MemmapSource::PageTables: return "page_tables";
    }
    return "unknown";
}

const char* mode_name(MemmapMode m) {
    switch (m) {
        case MemmapMode::Altmap: return "altmap";
        case MemmapMode::PageAllocator: return "page_allocator";
    }
    return "unknown";
}

// ---- Log2Histogram ---------------------------------------------------------

std::size_t Log2Histogram::bucket_of(std::uint64_t ns) {
    if (ns <= 1) return 0;
    // Smallest i with ns <= 2^i is the bit width of ns - 1.
    const auto i = static_cast<std::size_t>(std::bit_width(ns - 1));
    return i < kBuckets - 1 ? i : kBuckets - 1;
}

double Log2Histogram::upper_bound_seconds(std::size_t bucket) {
    if (bucket >= kBuckets - 1) return std::numeric_limits<double>::infinity();
    return std::ldexp(1e-9, static_cast<int>(bucket));
}

void Log2Histogram::observe(std::uint64_t ns) {
    ++buckets_[bucket_of(ns)];
    ++count_;
    sum_ns_ += ns;
}

// ---- Aggregator ------------------------------------------------------------

Aggregator::Aggregator(NodeResolver& nodes, AggregatorConfig cfg) : nodes_(nodes), cfg_(cfg) {}

void Aggregator::add_sink(OperationSink* sink) {
    if (sink) sinks_.push_back(sink);
}

void Aggregator::consume(std::span<const std::uint8_t> raw) {
    ++stats_.events;
    if (raw.size() != sizeof(memhp_event)) {
        ++stats_.decode_errors;
        return;
    }
    memhp_event ev;  // the ring buffer gives no alignment guarantee for the struct
    std::memcpy(&ev, raw.data(), sizeof ev);
    if (!valid_type(ev.type)) {
        ++stats_.decode_errors;
        return;
    }
    handle(ev);
}

void Aggregator::consume(const memhp_event& ev) {
    ++stats_.events;
    if (!valid_type(ev.type)) {
        ++stats_.decode_errors;
        return;
    }
    handle(ev);
}

void Aggregator::handle(const memhp_event& ev) {
    switch (ev.type) {
        case MEMHP_EV_PAGE_ALLOC:
        case MEMHP_EV_PAGE_FREE: buffer_page_event(ev); return;
        case MEMHP_EV_ADD: on_add(ev); return;
        // Populate runs inside its add and shares its op_id: the page events
        // stay buffered for the add's end event.
        case MEMHP_EV_POPULATE: on_populate(ev); return;
        case MEMHP_EV_ONLINE: on_online_offline(ev, Phase::Online); return;
        case MEMHP_EV_OFFLINE: on_online_offline(ev, Phase::Offline); return;
        case MEMHP_EV_REMOVE: on_remove(ev); return;
        default: ++stats_.decode_errors; return;
    }
}

void Aggregator::buffer_page_event(const memhp_event& ev) {
    if (ev.order >= 64) {  // 1 << order would be meaningless: a corrupt record
        ++stats_.decode_errors;
        return;
    }
    auto it = pending_.find(ev.op_id);
    if (it == pending_.end()) {
        // A new op in flight; make room by dropping the oldest if the buffer is full
        // (its end event was lost or will never come).
        while (pending_.size() >= kMaxPendingOps && !pending_order_.empty()) {
            auto oldest = pending_order_.begin();
            auto victim = pending_.find(oldest->second);
            if (victim != pending_.end()) {
                stats_.orphan_page_events += victim->second.pages.size();
                pending_.erase(victim);
            }
            pending_order_.erase(oldest);
        }
        const std::uint64_t seq = next_seq_++;
        it = pending_.emplace(ev.op_id, Pending{seq, {}}).first;
        pending_order_.emplace(seq, ev.op_id);
    }
    auto& pages = it->second.pages;
    if (pages.size() >= kMaxPageEventsPerOp) {
        ++stats_.orphan_page_events;
        return;
    }
    // Zero-filled records from other producers (hotplug_tp.bpf.c) carry no node: the flag says.
    const std::int32_t page_nid = (ev.flags & MEMHP_F_PAGE_NID) ? ev.page_nid : -1;
    pages.push_back(PageRecord{ev.pfn, ev.order, ev.type, page_nid, ev.site});
}

std::vector<Aggregator::PageRecord> Aggregator::take_pages(std::uint64_t op_id) {
    auto it = pending_.find(op_id);
    if (it == pending_.end()) return {};
    pending_order_.erase(it->second.seq);
    std::vector<PageRecord> pages = std::move(it->second.pages);
    pending_.erase(it);
    return pages;
}

const Aggregator::AddedRange* Aggregator::range_containing(std::uint64_t pfn) const {
    auto it = ranges_.upper_bound(pfn);
    if (it == ranges_.begin()) return nullptr;
    --it;
    return pfn - it->first < it->second.nr_pages ? &it->second : nullptr;
}

void Aggregator::count(const Operation& op) {
    const auto key = std::make_tuple(op.phase, op.nid, op.mode);
    ++stats_.operations[key];
    stats_.latency[key].observe(op.duration_ns);  // own time: nested phases have their own histograms
    if (op.ret < 0) ++stats_.failures[std::make_tuple(op.phase, -op.ret)];
    if (op.parent_phase) ++stats_.nested[std::make_tuple(op.phase, *op.parent_phase)];
}

void Aggregator::nesting(const memhp_event& ev, Operation& op) {
    // Populate runs inside its add and shares its op id: not a nested op.
    op.nested_ops = ev.nested_ops;
    op.nested_ns = std::min(ev.nested_ns, ev.duration_ns);  // a corrupt record cannot make own time negative
    op.duration_ns = ev.duration_ns - op.nested_ns;
    op.parent_op_id = ev.parent_op_id;
    if (ev.parent_op_id) op.parent_phase = phase_of_type(ev.op_type);
}

void Aggregator::remember_nested_pages(const Operation& op, std::uint64_t taken, std::uint64_t freed) {
    if (!op.parent_op_id) return;
    while (nested_pages_.size() >= kMaxNestedParents) nested_pages_.erase(nested_pages_.begin());
    nested_pages_[op.parent_op_id] += static_cast<std::int64_t>(taken) - static_cast<std::int64_t>(freed);
}

std::int64_t Aggregator::take_nested_pages(std::uint64_t parent_id) {
    auto it = nested_pages_.find(parent_id);
    if (it == nested_pages_.end()) return 0;
    const std::int64_t n = it->second;
    nested_pages_.erase(it);
    return n;
}

int Aggregator::page_node(const PageRecord& p, Operation& op) {
    const int sysfs = nodes_.node_of_pfn(p.pfn);
    if (p.page_nid < 0) return sysfs;
    if (sysfs < 0) return p.page_nid;  // a block sysfs does not list (yet): trust page->flags
    const std::uint64_t n = 1ull << p.order;
    op.node_checked_pages += n;
    if (sysfs != p.page_nid) {
        op.node_mismatched_pages += n;
        stats_.node_mismatched_pages += n;
    }
    return sysfs;
}

void Aggregator::emit(const Operation& op) {
    for (auto* sink : sinks_) sink->on_operation(op);
}

// The patched kernels report every memmap block (mhp_memmap_alloc): its
// source and the node it landed on. Those replace the classes the page
// events gave by order, which cannot tell a base-page memmap fallback from
// a page table; the page-table count keeps what is left of the order-0
// pages. The page events' PMD-order count is kept as a cross-check.
void Aggregator::apply_memmap_events(const memhp_event& ev, Operation& op) {
    Operation::MemmapEvents m;
    m.altmap_pages = ev.memmap_altmap_pages;
    m.buddy_pages = ev.memmap_buddy_pages;
    m.remote_pages = std::min(ev.memmap_remote_pages, ev.memmap_buddy_pages);
    m.base_pages = std::min(ev.memmap_base_pages, ev.memmap_buddy_pages);
    m.failed_blocks = ev.memmap_failed;
    m.page_event_huge_pages = op.memmap.buddy_pages - std::min(op.memmap.base_pages, op.memmap.buddy_pages);
    m.agree = m.page_event_huge_pages == m.buddy_pages - m.base_pages && m.altmap_pages == ev.altmap_pages;
    if (!m.agree) ++stats_.memmap_event_disagreements;
    // Order-0 pages the page events called page tables that were memmap.
    const std::uint64_t base_seen = m.base_pages > op.memmap.base_pages ? m.base_pages - op.memmap.base_pages : 0;
    op.memmap.pagetable_pages -= std::min(base_seen, op.memmap.pagetable_pages);
    op.memmap.buddy_pages = m.buddy_pages;
    op.memmap.base_pages = m.base_pages;
    op.memmap.remote_pages = m.remote_pages;
    op.memmap.local_pages = ev.altmap_pages + m.buddy_pages - m.remote_pages;
    op.memmap_events = m;
}

// The kernel's nr_memmap_pages around the op. Only a successful op is held
// to memhp's count (a failed add may leave some of its memmap behind until
// the rollback frees it, inside the op); a concurrent add or remove on
// another task moves the counter too, so a mismatch is flagged, not fixed.
void Aggregator::kernel_memmap(const memhp_event& ev, Operation& op, int sign) {
    if (!(ev.flags & MEMHP_F_KERNEL_MEMMAP) || ev.kernel_memmap_before < 0 || ev.kernel_memmap_after < 0) return;
    Operation::KernelMemmap k;
    k.before = ev.kernel_memmap_before;
    k.after = ev.kernel_memmap_after;
    k.memhp_pages = sign * static_cast<std::int64_t>(op.memmap.altmap_pages + op.memmap.buddy_pages);
    op.kernel_memmap = k;
    stats_.kernel_memmap_pages = k.after;
    if (ev.ret == 0 && !k.matches()) ++stats_.kernel_memmap_mismatches;
}

namespace {

// Whether a page an add took is memmap, and of which source: from the call
// site when BPF could tell it; else the order: PMD-sized blocks are
// memmap, order 0 is taken for page tables.
bool memmap_source_of(std::uint32_t site, std::uint32_t order, unsigned memmap_block_order, MemmapSource& source) {
    switch (site) {
        case MEMHP_SITE_MEMMAP: source = MemmapSource::PageAllocator; return true;
        case MEMHP_SITE_PAGETABLE: source = MemmapSource::PageTables; return true;
        case MEMHP_SITE_OTHER: return false;
        default:
            if (order == memmap_block_order) {
                source = MemmapSource::PageAllocator;
                return true;
            }
            source = MemmapSource::PageTables;
            return order == 0;
    }
}

// Why a successful add of `bytes` took its memmap from the page allocator
// although memmap_on_memory is enabled.
std::string memmap_unused_reason(const memhp_event& ev, std::uint64_t bytes, std::uint64_t block) {
    // A driver-managed add asks for the altmap itself or not at all:
    // virtio-mem never does; dax/kmem does when the dax device's
    // memmap_on_memory attribute is set (Linux >= 6.8, which also splits
    // a multi-block request into one altmap per block). So its flags
    // decide, before the size does.
    const bool requested = (ev.mhp_flags & kMhpMemmapOnMemory) != 0;
    if (ev.caller == MEMHP_CALLER_DRIVER_MANAGED && !requested)
        return "driver-managed add did not request MHP_MEMMAP_ON_MEMORY (virtio-mem never does; dax/kmem only "
               "with the dax device's memmap_on_memory attribute set, Linux >= 6.8)";
    if (block && bytes > block)
        return "the add spans " + std::to_string(bytes / block + (bytes % block ? 1 : 0)) +
               " memory blocks; this kernel uses memmap_on_memory only for single-block adds";
    if (!requested)
        return "the caller did not request MHP_MEMMAP_ON_MEMORY (mhp_supports_memmap_on_memory() refused, "
               "e.g. pageblock alignment)";
    return "the kernel did not set up an altmap";
}

}  // namespace

// The page-allocator pages an add's task took and gave back while it ran.
struct Aggregator::AddPages {
    std::vector<NodePages> per_node;  // memmap and page tables, by where they sit
    std::uint64_t taken = 0;
    std::uint64_t freed = 0;
};

Aggregator::AddPages Aggregator::bill_add_pages(const memhp_event& ev, Operation& op) {
    AddPages pages;
    for (const auto& p : take_pages(ev.op_id)) {
        const std::uint64_t n = 1ull << p.order;
        if (p.type == MEMHP_EV_PAGE_FREE) {
            pages.freed += n;
            continue;
        }
        pages.taken += n;
        MemmapSource source = MemmapSource::PageTables;
        const bool memmap = memmap_source_of(p.site, p.order, cfg_.memmap_block_order, source);
        const int node = page_node(p, op);
        if (!memmap) {
            op.memmap.other_pages += n;
        } else if (source == MemmapSource::PageAllocator) {
            op.memmap.buddy_pages += n;
            if (p.order < cfg_.memmap_block_order) op.memmap.base_pages += n;
            (node >= 0 && node == ev.nid ? op.memmap.local_pages : op.memmap.remote_pages) += n;
            node_entry(pages.per_node, node).buddy += n;
        } else {
            op.memmap.pagetable_pages += n;
            node_entry(pages.per_node, node).pagetable += n;
        }
    }
    // What BPF summed instead of sending page by page (not memmap, only cost).
    pages.taken += ev.summed_other_pages;
    op.memmap.other_pages += ev.summed_other_pages;
    pages.freed += ev.summed_freed_pages;
    return pages;
}

// A successful add's memmap, cost and range in the running totals.
void Aggregator::record_add(const memhp_event& ev, const Operation& op, const AddPages& pages) {
    const int nid = ev.nid;
    const std::uint64_t ps = cfg_.page_size;
    stats_.memmap_pages[{MemmapSource::Altmap, nid, nid}] += ev.altmap_pages;
    for (const auto& n : pages.per_node) {
        if (n.buddy) stats_.memmap_pages[{MemmapSource::PageAllocator, nid, n.node}] += n.buddy;
        if (n.pagetable) stats_.memmap_pages[{MemmapSource::PageTables, nid, n.node}] += n.pagetable;
    }
    stats_.free_bytes_consumed[nid] += op.free_bytes_consumed;
    stats_.present_bytes[nid] += static_cast<std::int64_t>(ev.nr_pages * ps);
    if (op.memmap_on_memory_unused) ++stats_.memmap_on_memory_unused;

    AddedRange& range = ranges_[ev.start_pfn];  // a repeated add of a live range accumulates
    range.nr_pages = std::max<std::uint64_t>(range.nr_pages, ev.nr_pages);
    range.nid = nid;
    range.mode = op.mode;
    auto contribute = [&](MemmapSource source, int node, std::uint64_t n) {
        const auto key = std::make_tuple(source, node);
        const std::int64_t b = as_bytes(n, ps);
        stats_.memmap_bytes[key] += b;
        range.memmap_bytes.emplace_back(key, b);
    };
    contribute(MemmapSource::Altmap, nid, ev.altmap_pages);
    for (const auto& n : pages.per_node) {
        if (n.buddy) contribute(MemmapSource::PageAllocator, n.node, n.buddy);
        if (n.pagetable) contribute(MemmapSource::PageTables, n.node, n.pagetable);
    }
}

void Aggregator::on_add(const memhp_event& ev) {
    Operation op = base_operation(Phase::Add, ev);
    nesting(ev, op);
    op.mhp_flags = ev.mhp_flags;
    op.caller = ev.caller == MEMHP_CALLER_DRIVER_MANAGED ? "driver_managed" : "add_memory";
    op.mode = mode_of_flags(ev.flags);
    op.memmap.altmap_pages = ev.altmap_pages;
    op.memmap.local_pages = ev.altmap_pages;

    const AddPages pages = bill_add_pages(ev, op);
    if (ev.flags & MEMHP_F_MEMMAP_EVENTS) apply_memmap_events(ev, op);
    kernel_memmap(ev, op, +1);
    const std::uint64_t ps = cfg_.page_size;
    op.free_bytes_consumed = (pages.taken > pages.freed ? pages.taken - pages.freed : 0) * ps;
    const std::int64_t inclusive =
        static_cast<std::int64_t>(pages.taken) - static_cast<std::int64_t>(pages.freed) + take_nested_pages(ev.op_id);
    op.free_bytes_consumed_inclusive = inclusive > 0 ? static_cast<std::uint64_t>(inclusive) * ps : 0;

    if (cfg_.memmap_on_memory_enabled && ev.ret == 0 && !(ev.flags & MEMHP_F_ALTMAP)) {
        op.memmap_on_memory_unused = true;
        op.unused_reason = memmap_unused_reason(ev, ev.nr_pages * ps, cfg_.block_size_bytes);
    }
    count(op);
    if (ev.ret == 0) record_add(ev, op, pages);
    emit(op);
}

void Aggregator::on_populate(const memhp_event& ev) {
    Operation op = base_operation(Phase::Populate, ev);
    nesting(ev, op);
    op.mode = mode_of_flags(ev.flags);
    op.populate_direct = (ev.flags & MEMHP_F_POPULATE_DIRECT) != 0;
    count(op);
    emit(op);
}

void Aggregator::on_online_offline(const memhp_event& ev, Phase phase) {
    Operation op = base_operation(phase, ev);
    op.zone.assign(ev.zone, ::strnlen(ev.zone, sizeof ev.zone));
    op.vmemmap_pages = ev.vmemmap_pages;
    const AddedRange* range = range_containing(ev.start_pfn);
    if (op.nid < 0) op.nid = range ? range->nid : nodes_.node_of_pfn(ev.start_pfn);
    if (range)
        op.mode = range->mode;
    else
        op.mode =
            (ev.vmemmap_pages > 0 || (ev.flags & MEMHP_F_ALTMAP)) ? MemmapMode::Altmap : MemmapMode::PageAllocator;
    nesting(ev, op);
    // The op is over; its page events say nothing about the memmap, but
    // what it took is its own (and, nested, its parent's inclusive) cost.
    // Pages inside the block itself are the memory changing hands (online
    // frees the new range into the page allocator), not a cost: left out.
    std::uint64_t taken = 0, freed = 0;
    for (const auto& p : take_pages(ev.op_id)) {
        if (p.pfn >= ev.start_pfn && p.pfn - ev.start_pfn < ev.nr_pages) continue;
        (p.type == MEMHP_EV_PAGE_FREE ? freed : taken) += 1ull << p.order;
    }
    op.free_bytes_consumed = (taken > freed ? taken - freed : 0) * cfg_.page_size;
    remember_nested_pages(op, taken, freed);
    count(op);
    emit(op);
}

void Aggregator::on_remove(const memhp_event& ev) {
    Operation op = base_operation(Phase::Remove, ev);
    nesting(ev, op);
    const AddedRange* range = range_containing(ev.start_pfn);
    if (op.nid < 0) op.nid = range ? range->nid : nodes_.node_of_pfn(ev.start_pfn);
    if (range)
        op.mode = range->mode;
    else
        op.mode = (ev.altmap_pages > 0 || (ev.flags & MEMHP_F_ALTMAP)) ? MemmapMode::Altmap : MemmapMode::PageAllocator;
    op.memmap.altmap_pages = ev.altmap_pages;
    op.memmap.local_pages = ev.altmap_pages;
    (void)take_nested_pages(ev.op_id);  // an offline inside the remove: its pages are its own
    for (const auto& p : take_pages(ev.op_id)) {
        if (p.type != MEMHP_EV_PAGE_FREE) continue;  // remove gives pages back; allocations are not memmap
        const std::uint64_t n = 1ull << p.order;
        const int node = page_node(p, op);
        if (p.order == cfg_.memmap_block_order) {
            op.memmap.buddy_pages += n;
            (node >= 0 && node == op.nid ? op.memmap.local_pages : op.memmap.remote_pages) += n;
        } else if (p.order == 0) {
            op.memmap.pagetable_pages += 1;
        } else {
            op.memmap.other_pages += n;
        }
    }

    kernel_memmap(ev, op, -1);
    count(op);
    if (ev.ret == 0) {
        // Every added range starting inside the removed span goes, with exactly
        // the bytes its add put in: a remove whose add was never seen (memhp
        // started later) leaves the live gauges alone instead of driving
        // them negative.
        for (auto it = ranges_.lower_bound(ev.start_pfn);
             it != ranges_.end() && it->first - ev.start_pfn < ev.nr_pages;) {
            stats_.present_bytes[it->second.nid] -= static_cast<std::int64_t>(it->second.nr_pages * cfg_.page_size);
            for (const auto& [key, bytes] : it->second.memmap_bytes) stats_.memmap_bytes[key] -= bytes;
            it = ranges_.erase(it);
        }
    }
    emit(op);
}

// ---- JSON ------------------------------------------------------------------

TraceLosses trace_losses(const Stats& s, std::uint64_t dropped_events, const OpHealth& health) {
    TraceLosses l;
    l.dropped_events = dropped_events;
    l.decode_errors = s.decode_errors;
    l.orphan_page_events = s.orphan_page_events;
    l.stale_ops = health.stale_missed_exit + health.swept_task_gone + health.swept_too_old;
    l.untraced_ops = health.ops_map_full + health.nest_overflow;
    return l;
}

nlohmann::json summary_to_json(const Stats& s, const TraceLosses& losses, const OpHealth& health,
                               std::uint64_t interrupt_page_events) {
    return {
        {"schema", kTraceJsonSchema},
        {"record", "summary"},
        {"events", s.events},
        {"dropped_events", losses.dropped_events},
        {"decode_errors", losses.decode_errors},
        {"orphan_page_events", losses.orphan_page_events},
        {"stale_ops", losses.stale_ops},
        {"untraced_ops", losses.untraced_ops},
        {"lost", losses.any()},
        {"op_state",
         {{"stale_missed_exit", health.stale_missed_exit},
          {"swept_task_gone", health.swept_task_gone},
          {"swept_too_old", health.swept_too_old},
          {"ops_map_full", health.ops_map_full},
          {"nest_overflow", health.nest_overflow}}},
        {"interrupt_page_events", interrupt_page_events},
    };
}

nlohmann::json to_json(const Operation& op) {
    nlohmann::json j = {
        {"schema", kTraceJsonSchema},
        {"phase", phase_name(op.phase)},
        {"op_id", op.op_id},
        {"tid", op.tid},
        {"ts_ns", op.ts_ns},
        {"nid", op.nid},
        {"start_pfn", op.start_pfn},
        {"nr_pages", op.nr_pages},
        {"ret", op.ret},
        {"duration_ns", op.duration_ns},
        {"inclusive_ns", op.inclusive_ns},
        {"nested_ns", op.nested_ns},
        {"nested_ops", op.nested_ops},
        {"parent_op_id", op.parent_op_id},
        {"mode", mode_name(op.mode)},
    };
    if (op.parent_phase) j["parent_phase"] = phase_name(*op.parent_phase);
    if (!op.sub_phases_ns.empty()) {
        nlohmann::json sub = nlohmann::json::object();
        for (const auto& [name, ns] : op.sub_phases_ns) sub[name] = ns;
        j["sub_phases_ns"] = sub;
        if (op.sub_phases_unbalanced) j["sub_phases_unbalanced"] = true;
    }
    if (op.zone_span)
        j["zone_span"] = {{"start_pfn", op.zone_span->start_pfn}, {"spanned_pages", op.zone_span->spanned_pages}};
    if (op.phase == Phase::Add || op.phase == Phase::Remove) {
        j["memmap"] = {
            {"altmap_pages", op.memmap.altmap_pages},       {"buddy_pages", op.memmap.buddy_pages},
            {"pagetable_pages", op.memmap.pagetable_pages}, {"other_pages", op.memmap.other_pages},
            {"local_pages", op.memmap.local_pages},         {"remote_pages", op.memmap.remote_pages},
        };
        if (op.phase == Phase::Add) j["memmap"]["base_pages"] = op.memmap.base_pages;
        if (op.phase == Phase::Add) j["memmap_from"] = op.memmap_events ? "memmap_events" : "page_events";
        if (const auto& k = op.kernel_memmap)
            j["kernel_memmap_pages"] = {{"before", k->before},
                                        {"after", k->after},
                                        {"delta", k->delta()},
                                        {"memhp_pages", k->memhp_pages},
                                        {"matches", k->matches()}};
        if (const auto& m = op.memmap_events)
            j["memmap_events"] = {{"altmap_pages", m->altmap_pages},
                                  {"buddy_pages", m->buddy_pages},
                                  {"remote_pages", m->remote_pages},
                                  {"base_pages", m->base_pages},
                                  {"failed_blocks", m->failed_blocks},
                                  {"page_event_huge_pages", m->page_event_huge_pages},
                                  {"agree", m->agree}};
        j["node_check"] = {{"pages", op.node_checked_pages}, {"mismatched", op.node_mismatched_pages}};
    }
    switch (op.phase) {
        case Phase::Add:
            j["caller"] = op.caller;
            j["mhp_flags"] = op.mhp_flags;
            j["free_bytes_consumed"] = op.free_bytes_consumed;
            j["free_bytes_consumed_inclusive"] = op.free_bytes_consumed_inclusive;
            j["memmap_on_memory_unused"] = op.memmap_on_memory_unused;
            if (op.memmap_on_memory_unused) j["unused_reason"] = op.unused_reason;
            break;
        case Phase::Online:
        case Phase::Offline:
            j["zone"] = op.zone;
            j["vmemmap_pages"] = op.vmemmap_pages;
            j["free_bytes_consumed"] = op.free_bytes_consumed;
            break;
        case Phase::Populate: j["direct"] = op.populate_direct; break;
        case Phase::Remove: break;
    }
    return j;
}

}  // namespace memhp::collector
