// SPDX-License-Identifier: Apache-2.0
#include "memhp/collector/aggregator.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace memhp::collector {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kBlockPages = 32768;         // 128 MiB
constexpr std::uint64_t kBlockBytes = 128ull << 20;  // 128 MiB
constexpr std::uint64_t kBootPfn = 0x10000;          // node 0: boot memory
constexpr std::uint64_t kHotPfn = 0x140000;          // node 1: the hot-plugged range (5 GiB)
constexpr std::uint64_t kNode1Start = 0x100000;      // node 1 starts at 4 GiB

// Node 0 below 4 GiB, node 1 above; counts lookups.
class FakeNodes : public NodeResolver {
public:
    int node_of_pfn(std::uint64_t pfn) override {
        ++lookups;
        return pfn < kNode1Start ? 0 : 1;
    }
    int lookups = 0;
};

class Recorder : public OperationSink {
public:
    void on_operation(const Operation& op) override { ops.push_back(op); }
    std::vector<Operation> ops;
};

memhp_event event(std::uint32_t type, std::uint64_t op_id) {
    memhp_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.op_id = op_id;
    ev.tid = 4242;
    ev.ts_ns = 1000 + op_id;
    ev.nid = -1;
    return ev;
}

memhp_event page(std::uint32_t type, std::uint64_t op_id, std::uint64_t pfn, std::uint32_t order,
                 std::uint32_t op_type = MEMHP_EV_ADD) {
    auto ev = event(type, op_id);
    ev.pfn = pfn;
    ev.order = order;
    ev.op_type = op_type;
    return ev;
}

memhp_event add(std::uint64_t op_id, int nid, std::uint64_t start_pfn, std::uint64_t nr_pages, std::uint32_t flags = 0,
                std::uint64_t altmap_pages = 0, std::uint64_t mhp_flags = 0,
                std::uint32_t caller = MEMHP_CALLER_ADD_MEMORY, int ret = 0) {
    auto ev = event(MEMHP_EV_ADD, op_id);
    ev.nid = nid;
    ev.start_pfn = start_pfn;
    ev.nr_pages = nr_pages;
    ev.flags = flags;
    ev.altmap_pages = altmap_pages;
    ev.mhp_flags = mhp_flags;
    ev.caller = caller;
    ev.ret = ret;
    ev.duration_ns = 5'000'000;
    return ev;
}

memhp_event online_offline(std::uint32_t type, std::uint64_t op_id, std::uint64_t start_pfn, std::uint64_t nr_pages,
                           std::uint64_t vmemmap_pages = 0, int ret = 0, int nid = -1) {
    auto ev = event(type, op_id);
    ev.nid = nid;
    ev.start_pfn = start_pfn;
    ev.nr_pages = nr_pages;
    ev.vmemmap_pages = vmemmap_pages;
    ev.ret = ret;
    ev.duration_ns = 2'000'000;
    std::strncpy(ev.zone, "Movable", sizeof ev.zone);
    return ev;
}

memhp_event remove(std::uint64_t op_id, std::uint64_t start_pfn, std::uint64_t nr_pages, std::uint64_t altmap_pages = 0,
                   int ret = 0, int nid = -1) {
    auto ev = event(MEMHP_EV_REMOVE, op_id);
    ev.nid = nid;
    ev.start_pfn = start_pfn;
    ev.nr_pages = nr_pages;
    ev.altmap_pages = altmap_pages;
    ev.ret = ret;
    ev.duration_ns = 3'000'000;
    return ev;
}

template <class K, class V>
V value_or_zero(const std::map<K, V>& m, const K& k) {
    auto it = m.find(k);
    return it == m.end() ? V{} : it->second;
}

struct AggregatorTest : ::testing::Test {
    AggregatorConfig cfg() const {
        AggregatorConfig c;
        c.memmap_on_memory_enabled = mmo;
        return c;
    }
    Aggregator& agg() {
        if (!agg_) {
            agg_ = std::make_unique<Aggregator>(nodes, cfg());
            agg_->add_sink(&sink);
        }
        return *agg_;
    }
    const Stats& stats() { return agg().stats(); }
    const Operation& last() {
        EXPECT_FALSE(sink.ops.empty());
        return sink.ops.back();
    }
    // Debian 6.1, memmap_on_memory=0: one order-9 memmap block from node 0, one page-table page.
    void add_page_allocator(std::uint64_t op_id, std::uint64_t start_pfn = kHotPfn) {
        agg().consume(page(MEMHP_EV_PAGE_ALLOC, op_id, kBootPfn, 9));
        agg().consume(page(MEMHP_EV_PAGE_ALLOC, op_id, kBootPfn + 0x2000, 0));
        agg().consume(add(op_id, 1, start_pfn, kBlockPages));
    }
    // memmap_on_memory=1: the altmap supplies 512 pages; one page-table page.
    void add_altmap(std::uint64_t op_id, std::uint64_t start_pfn = kHotPfn) {
        agg().consume(page(MEMHP_EV_PAGE_ALLOC, op_id, kBootPfn + 0x3000, 0));
        agg().consume(add(op_id, 1, start_pfn, kBlockPages, MEMHP_F_ALTMAP, 512, 2));
    }

    bool mmo = false;
    FakeNodes nodes;
    Recorder sink;
    std::unique_ptr<Aggregator> agg_;
};

// ---- names -------------------------------------------------------------------

TEST(Names, Documented) {
    EXPECT_STREQ(phase_name(Phase::Add), "add");
    EXPECT_STREQ(phase_name(Phase::Populate), "populate");
    EXPECT_STREQ(phase_name(Phase::Online), "online");
    EXPECT_STREQ(phase_name(Phase::Offline), "offline");
    EXPECT_STREQ(phase_name(Phase::Remove), "remove");
    EXPECT_STREQ(source_name(MemmapSource::Altmap), "altmap");
    EXPECT_STREQ(source_name(MemmapSource::PageAllocator), "page_allocator");
    EXPECT_STREQ(source_name(MemmapSource::PageTables), "page_tables");
    EXPECT_STREQ(mode_name(MemmapMode::Altmap), "altmap");
    EXPECT_STREQ(mode_name(MemmapMode::PageAllocator), "page_allocator");
}

// ---- histogram ---------------------------------------------------------------

TEST(Log2Histogram, BucketEdges) {
    EXPECT_EQ(Log2Histogram::bucket_of(0), 0u);
    EXPECT_EQ(Log2Histogram::bucket_of(1), 0u);
    EXPECT_EQ(Log2Histogram::bucket_of(2), 1u);
    EXPECT_EQ(Log2Histogram::bucket_of(3), 2u);
    EXPECT_EQ(Log2Histogram::bucket_of(4), 2u);
    EXPECT_EQ(Log2Histogram::bucket_of(5), 3u);
    EXPECT_EQ(Log2Histogram::bucket_of(8), 3u);
    EXPECT_EQ(Log2Histogram::bucket_of(9), 4u);
    EXPECT_EQ(Log2Histogram::bucket_of(1ull << 38), 38u);
    EXPECT_EQ(Log2Histogram::bucket_of((1ull << 38) + 1), Log2Histogram::kBuckets - 1);
    EXPECT_EQ(Log2Histogram::bucket_of(std::numeric_limits<std::uint64_t>::max()), Log2Histogram::kBuckets - 1);
}

TEST(Log2Histogram, BucketHoldsItsUpperBound) {
    // Every bucket i < last holds exactly (2^(i-1), 2^i]: agrees with Prometheus `le`.
    for (std::size_t i = 1; i + 1 < Log2Histogram::kBuckets; ++i) {
        EXPECT_EQ(Log2Histogram::bucket_of(1ull << i), i) << i;
        EXPECT_EQ(Log2Histogram::bucket_of((1ull << (i - 1)) + 1), i) << i;
    }
}

TEST(Log2Histogram, UpperBounds) {
    EXPECT_DOUBLE_EQ(Log2Histogram::upper_bound_seconds(0), 1e-9);
    EXPECT_DOUBLE_EQ(Log2Histogram::upper_bound_seconds(1), 2e-9);
    EXPECT_DOUBLE_EQ(Log2Histogram::upper_bound_seconds(30), 1073741824e-9);
    EXPECT_DOUBLE_EQ(Log2Histogram::upper_bound_seconds(38), 274877906944e-9);
    EXPECT_TRUE(std::isinf(Log2Histogram::upper_bound_seconds(Log2Histogram::kBuckets - 1)));
}

TEST(Log2Histogram, ObserveCountsAndSums) {
    Log2Histogram h;
    h.observe(0);
    h.observe(3);
    h.observe(4);
    h.observe(std::numeric_limits<std::uint64_t>::max() / 2);
    EXPECT_EQ(h.count(), 4u);
    EXPECT_EQ(h.sum_ns(), 7u + std::numeric_limits<std::uint64_t>::max() / 2);
    EXPECT_EQ(h.buckets()[0], 1u);
    EXPECT_EQ(h.buckets()[2], 2u);
    EXPECT_EQ(h.buckets()[Log2Histogram::kBuckets - 1], 1u);
}

// ---- decoding ----------------------------------------------------------------

TEST_F(AggregatorTest, DecodeErrorsForWrongSizeOrType) {
    auto ev = add(1, 1, kHotPfn, kBlockPages);
    std::vector<std::uint8_t> raw(sizeof ev);
    std::memcpy(raw.data(), &ev, sizeof ev);

    agg().consume(std::span<const std::uint8_t>(raw.data(), raw.size() - 1));  // short
    std::vector<std::uint8_t> longer(raw);
    longer.push_back(0);
    agg().consume(std::span<const std::uint8_t>(longer));  // long
    agg().consume(std::span<const std::uint8_t>());        // empty
    for (std::uint32_t bad : {0u, 8u, 0xffffffffu}) {
        auto wrong = ev;
        wrong.type = bad;
        std::vector<std::uint8_t> r(sizeof wrong);
        std::memcpy(r.data(), &wrong, sizeof wrong);
        agg().consume(std::span<const std::uint8_t>(r));
    }
    EXPECT_EQ(stats().decode_errors, 6u);
    EXPECT_EQ(stats().events, 6u);
    EXPECT_TRUE(sink.ops.empty());
    EXPECT_TRUE(stats().operations.empty());

    agg().consume(std::span<const std::uint8_t>(raw));  // the good one
    EXPECT_EQ(stats().decode_errors, 6u);
    EXPECT_EQ(stats().events, 7u);
    ASSERT_EQ(sink.ops.size(), 1u);
    EXPECT_EQ(sink.ops[0].phase, Phase::Add);
}

TEST_F(AggregatorTest, DecodesUnalignedRecords) {
    auto ev = add(7, 1, kHotPfn, kBlockPages);
    std::vector<std::uint8_t> buf(sizeof ev + 1);
    std::memcpy(buf.data() + 1, &ev, sizeof ev);
    agg().consume(std::span<const std::uint8_t>(buf.data() + 1, sizeof ev));
    ASSERT_EQ(sink.ops.size(), 1u);
    EXPECT_EQ(sink.ops[0].op_id, 7u);
    EXPECT_EQ(stats().decode_errors, 0u);
}

TEST_F(AggregatorTest, DirectConsumeOfBadTypeIsADecodeError) {
    agg().consume(event(0, 1));
    agg().consume(event(99, 1));
    EXPECT_EQ(stats().decode_errors, 2u);
    EXPECT_EQ(stats().events, 2u);
}

TEST_F(AggregatorTest, EveryEventCounts) {
    add_page_allocator(1);
    EXPECT_EQ(stats().events, 3u);
    EXPECT_EQ(stats().decode_errors, 0u);
}

// ---- add -----------------------------------------------------------------------

TEST_F(AggregatorTest, Debian61MemmapOnMemoryOff) {
    add_page_allocator(1);
    ASSERT_EQ(sink.ops.size(), 1u);
    const auto& op = last();
    EXPECT_EQ(op.phase, Phase::Add);
    EXPECT_EQ(op.op_id, 1u);
    EXPECT_EQ(op.tid, 4242u);
    EXPECT_EQ(op.nid, 1);
    EXPECT_EQ(op.ret, 0);
    EXPECT_EQ(op.start_pfn, kHotPfn);
    EXPECT_EQ(op.nr_pages, kBlockPages);
    EXPECT_EQ(op.duration_ns, 5'000'000u);
    EXPECT_EQ(op.caller, "add_memory");
    EXPECT_EQ(op.mode, MemmapMode::PageAllocator);
    EXPECT_EQ(op.memmap.altmap_pages, 0u);
    EXPECT_EQ(op.memmap.buddy_pages, 512u);
    EXPECT_EQ(op.memmap.pagetable_pages, 1u);
    EXPECT_EQ(op.memmap.other_pages, 0u);
    EXPECT_EQ(op.memmap.local_pages, 0u);
    EXPECT_EQ(op.memmap.remote_pages, 512u);
    EXPECT_EQ(op.free_bytes_consumed, 513u * 4096u);
    EXPECT_FALSE(op.memmap_on_memory_unused);  // the parameter is off: nothing to flag
    EXPECT_TRUE(op.unused_reason.empty());

    const auto& s = stats();
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::PageAllocator, 1, 0}), 512u);
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::PageTables, 1, 0}), 1u);
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::Altmap, 1, 1}), 0u);
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::PageAllocator, 1, 1}), 0u);
    EXPECT_EQ(value_or_zero(s.free_bytes_consumed, 1), 513u * 4096u);
    EXPECT_EQ(value_or_zero(s.present_bytes, 1), static_cast<std::int64_t>(kBlockBytes));
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::PageAllocator, 0}), 512 * 4096);
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::PageTables, 0}), 4096);
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::Altmap, 1}), 0);
    EXPECT_EQ(value_or_zero(s.operations, {Phase::Add, 1, MemmapMode::PageAllocator}), 1u);
    EXPECT_EQ(s.latency.at({Phase::Add, 1, MemmapMode::PageAllocator}).count(), 1u);
    EXPECT_EQ(s.latency.at({Phase::Add, 1, MemmapMode::PageAllocator}).sum_ns(), 5'000'000u);
    EXPECT_TRUE(s.failures.empty());
    EXPECT_EQ(s.memmap_on_memory_unused, 0u);
    EXPECT_EQ(s.orphan_page_events, 0u);
}

TEST_F(AggregatorTest, Debian61MemmapOnMemoryOn) {
    mmo = true;
    add_altmap(1);
    const auto& op = last();
    EXPECT_EQ(op.mode, MemmapMode::Altmap);
    EXPECT_EQ(op.mhp_flags, 2u);
    EXPECT_EQ(op.memmap.altmap_pages, 512u);
    EXPECT_EQ(op.memmap.local_pages, 512u);
    EXPECT_EQ(op.memmap.remote_pages, 0u);
    EXPECT_EQ(op.memmap.buddy_pages, 0u);
    EXPECT_EQ(op.memmap.pagetable_pages, 1u);
    EXPECT_EQ(op.free_bytes_consumed, 4096u);
    EXPECT_FALSE(op.memmap_on_memory_unused);

    const auto& s = stats();
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::Altmap, 1, 1}), 512u);
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::PageTables, 1, 0}), 1u);
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::PageAllocator, 1, 0}), 0u);
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::Altmap, 1}), 512 * 4096);
    EXPECT_EQ(value_or_zero(s.free_bytes_consumed, 1), 4096u);
    EXPECT_EQ(value_or_zero(s.operations, {Phase::Add, 1, MemmapMode::Altmap}), 1u);
    EXPECT_EQ(s.memmap_on_memory_unused, 0u);
}

TEST_F(AggregatorTest, OneGiBAddFallsBackToThePageAllocator) {
    mmo = true;
    const std::uint64_t nr = 8 * kBlockPages;
    for (int i = 0; i < 8; ++i) agg().consume(page(MEMHP_EV_PAGE_ALLOC, 3, kBootPfn + 512u * i, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 3, kBootPfn + 0x4000, 0));
    agg().consume(add(3, 1, kHotPfn, nr, 0, 0, 2));
    const auto& op = last();
    EXPECT_EQ(op.mode, MemmapMode::PageAllocator);
    EXPECT_EQ(op.memmap.buddy_pages, 4096u);
    EXPECT_EQ(op.memmap.remote_pages, 4096u);
    EXPECT_EQ(op.memmap.pagetable_pages, 1u);
    EXPECT_EQ(op.free_bytes_consumed, 4097u * 4096u);
    EXPECT_TRUE(op.memmap_on_memory_unused);
    EXPECT_EQ(op.unused_reason,
              "the add spans 8 memory blocks; this kernel uses memmap_on_memory only for single-block adds");
    EXPECT_EQ(stats().memmap_on_memory_unused, 1u);
    EXPECT_EQ(value_or_zero(stats().present_bytes, 1), static_cast<std::int64_t>(8 * kBlockBytes));
    EXPECT_EQ(value_or_zero(stats().memmap_pages, {MemmapSource::PageAllocator, 1, 0}), 4096u);
}

TEST_F(AggregatorTest, PartialBlockCountRoundsUp) {
    mmo = true;
    agg().consume(add(3, 1, kHotPfn, kBlockPages + 1));
    EXPECT_THAT(last().unused_reason, HasSubstr("spans 2 memory blocks"));
}

constexpr const char* kDriverManagedReason =
    "driver-managed add did not request MHP_MEMMAP_ON_MEMORY (virtio-mem never does; dax/kmem only with the dax "
    "device's memmap_on_memory attribute set, Linux >= 6.8)";

// dax/kmem adds a 1 GiB dax range in one add_memory_driver_managed(): with
// the dax attribute unset it did not ask for the altmap, whatever its size
// (not "the add spans 8 memory blocks", which is about kernels before 6.8).
TEST_F(AggregatorTest, KmemAddWithoutTheAttributeSaysTheDriverDidNotAsk) {
    mmo = true;
    for (int i = 0; i < 8; ++i) agg().consume(page(MEMHP_EV_PAGE_ALLOC, 5, kBootPfn + 512u * i, 9));
    agg().consume(add(5, 1, kHotPfn, 8 * kBlockPages, 0, 0, 0, MEMHP_CALLER_DRIVER_MANAGED));
    const auto& op = last();
    EXPECT_EQ(op.caller, "driver_managed");
    EXPECT_EQ(op.mode, MemmapMode::PageAllocator);
    EXPECT_EQ(op.memmap.buddy_pages, 4096u);
    EXPECT_EQ(op.memmap.remote_pages, 4096u);
    EXPECT_TRUE(op.memmap_on_memory_unused);
    EXPECT_EQ(op.unused_reason, kDriverManagedReason);
}

// With the attribute set (>= 6.8) the same add carries MHP_MEMMAP_ON_MEMORY
// and one altmap per block: 8 x 512 pages, all on the node served.
TEST_F(AggregatorTest, KmemAddWithTheAttributeIsAltmapAndLocal) {
    mmo = true;
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 6, kBootPfn + 0x3000, 0));
    agg().consume(add(6, 1, kHotPfn, 8 * kBlockPages, MEMHP_F_ALTMAP, 8 * 512, 2 | 1, MEMHP_CALLER_DRIVER_MANAGED));
    const auto& op = last();
    EXPECT_EQ(op.caller, "driver_managed");
    EXPECT_EQ(op.mode, MemmapMode::Altmap);
    EXPECT_EQ(op.memmap.altmap_pages, 4096u);
    EXPECT_EQ(op.memmap.local_pages, 4096u);
    EXPECT_EQ(op.memmap.remote_pages, 0u);
    EXPECT_EQ(op.memmap.buddy_pages, 0u);
    EXPECT_FALSE(op.memmap_on_memory_unused);
    EXPECT_EQ(value_or_zero(stats().memmap_pages, {MemmapSource::Altmap, 1, 1}), 4096u);
    // Asked for it, did not get it (a kernel without the per-block split):
    agg().consume(add(7, 1, kHotPfn + 8 * kBlockPages, 8 * kBlockPages, 0, 0, 2 | 1, MEMHP_CALLER_DRIVER_MANAGED));
    EXPECT_THAT(last().unused_reason, HasSubstr("spans 8 memory blocks"));
}

TEST_F(AggregatorTest, UnusedReasons) {
    mmo = true;
    agg().consume(add(1, 1, kHotPfn, kBlockPages, 0, 0, 0, MEMHP_CALLER_DRIVER_MANAGED));
    EXPECT_EQ(last().caller, "driver_managed");
    EXPECT_EQ(last().unused_reason, kDriverManagedReason);
    agg().consume(add(2, 1, kHotPfn + kBlockPages, kBlockPages, 0, 0, 0));
    EXPECT_EQ(last().unused_reason,
              "the caller did not request MHP_MEMMAP_ON_MEMORY (mhp_supports_memmap_on_memory() refused, e.g. "
              "pageblock alignment)");
    agg().consume(add(3, 1, kHotPfn + 2 * kBlockPages, kBlockPages, 0, 0, 2 | 1));
    EXPECT_EQ(last().unused_reason, "the kernel did not set up an altmap");
    EXPECT_EQ(stats().memmap_on_memory_unused, 3u);
    for (const auto& op : sink.ops) EXPECT_TRUE(op.memmap_on_memory_unused);
}

TEST_F(AggregatorTest, FailedAddIsNotFlaggedAndChangesNoGauge) {
    mmo = true;
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(page(MEMHP_EV_PAGE_FREE, 1, kBootPfn, 9));
    agg().consume(add(1, 1, kHotPfn, kBlockPages, 0, 0, 0, MEMHP_CALLER_ADD_MEMORY, -17));
    const auto& op = last();
    EXPECT_EQ(op.ret, -17);
    EXPECT_FALSE(op.memmap_on_memory_unused);
    EXPECT_EQ(op.memmap.buddy_pages, 512u);
    EXPECT_EQ(op.free_bytes_consumed, 0u);  // the free gave it back
    const auto& s = stats();
    EXPECT_EQ(value_or_zero(s.failures, {Phase::Add, 17}), 1u);
    EXPECT_EQ(value_or_zero(s.operations, {Phase::Add, 1, MemmapMode::PageAllocator}), 1u);
    EXPECT_TRUE(s.present_bytes.empty());
    EXPECT_TRUE(s.memmap_bytes.empty());
    EXPECT_TRUE(s.memmap_pages.empty());
    EXPECT_TRUE(s.free_bytes_consumed.empty());
    EXPECT_EQ(s.memmap_on_memory_unused, 0u);
}

TEST_F(AggregatorTest, FreesDuringAddReduceConsumedBytesWithAFloorOfZero) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn + 0x2000, 0));
    agg().consume(page(MEMHP_EV_PAGE_FREE, 1, kBootPfn + 0x2000, 0));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().free_bytes_consumed, 512u * 4096u);

    agg().consume(page(MEMHP_EV_PAGE_FREE, 2, kBootPfn, 10));
    agg().consume(add(2, 1, kHotPfn + kBlockPages, kBlockPages));
    EXPECT_EQ(last().free_bytes_consumed, 0u);
}

TEST_F(AggregatorTest, OtherOrdersAndLocalBuddyPages) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kNode1Start, 9));  // memmap on node 1 itself: local
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 3));     // something else: 8 pages
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    const auto& op = last();
    EXPECT_EQ(op.memmap.buddy_pages, 512u);
    EXPECT_EQ(op.memmap.local_pages, 512u);
    EXPECT_EQ(op.memmap.remote_pages, 0u);
    EXPECT_EQ(op.memmap.other_pages, 8u);
    EXPECT_EQ(op.free_bytes_consumed, 520u * 4096u);
    EXPECT_EQ(value_or_zero(stats().memmap_pages, {MemmapSource::PageAllocator, 1, 1}), 512u);
    EXPECT_EQ(value_or_zero(stats().memmap_bytes, {MemmapSource::PageAllocator, 1}), 512 * 4096);
}

TEST_F(AggregatorTest, PageEventsOfAnotherOpAreNotMixedIn) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 2, kBootPfn + 0x1000, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 2, kBootPfn + 0x1200, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn + 0x2000, 0));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().memmap.buddy_pages, 512u);
    EXPECT_EQ(last().memmap.pagetable_pages, 1u);
    agg().consume(add(2, 1, kHotPfn + 2 * kBlockPages, 2 * kBlockPages));
    EXPECT_EQ(last().memmap.buddy_pages, 1024u);
    EXPECT_EQ(last().memmap.pagetable_pages, 0u);
    // A later op with no page events of its own gets none.
    agg().consume(add(3, 1, kHotPfn + 4 * kBlockPages, kBlockPages));
    EXPECT_EQ(last().memmap.buddy_pages, 0u);
    EXPECT_EQ(last().free_bytes_consumed, 0u);
    EXPECT_EQ(stats().orphan_page_events, 0u);
}

TEST_F(AggregatorTest, PopulateKeepsTheAddsPageEvents) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    auto pop = event(MEMHP_EV_POPULATE, 1);
    pop.nid = 1;
    pop.start_pfn = kHotPfn;
    pop.nr_pages = kBlockPages;
    pop.duration_ns = 700'000;
    pop.flags = MEMHP_F_POPULATE_DIRECT;
    agg().consume(pop);
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn + 0x2000, 0));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    ASSERT_EQ(sink.ops.size(), 2u);
    const auto& p = sink.ops[0];
    EXPECT_EQ(p.phase, Phase::Populate);
    EXPECT_TRUE(p.populate_direct);
    EXPECT_EQ(p.mode, MemmapMode::PageAllocator);
    EXPECT_EQ(p.nid, 1);
    EXPECT_EQ(p.duration_ns, 700'000u);
    EXPECT_EQ(sink.ops[1].memmap.buddy_pages, 512u);
    EXPECT_EQ(sink.ops[1].memmap.pagetable_pages, 1u);
    EXPECT_EQ(value_or_zero(stats().operations, {Phase::Populate, 1, MemmapMode::PageAllocator}), 1u);

    pop.flags = MEMHP_F_ALTMAP;
    pop.ret = -12;
    agg().consume(pop);
    EXPECT_FALSE(last().populate_direct);
    EXPECT_EQ(last().mode, MemmapMode::Altmap);
    EXPECT_EQ(value_or_zero(stats().failures, {Phase::Populate, 12}), 1u);
}

// ---- online / offline / remove -----------------------------------------------------

TEST_F(AggregatorTest, FullLifecycleReturnsGaugesToZero) {
    add_page_allocator(1);
    agg().consume(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages));
    agg().consume(online_offline(MEMHP_EV_OFFLINE, 3, kHotPfn, kBlockPages));
    agg().consume(page(MEMHP_EV_PAGE_FREE, 4, kBootPfn, 9, MEMHP_EV_REMOVE));
    agg().consume(page(MEMHP_EV_PAGE_FREE, 4, kBootPfn + 0x2000, 0, MEMHP_EV_REMOVE));
    agg().consume(remove(4, kHotPfn, kBlockPages));

    ASSERT_EQ(sink.ops.size(), 4u);
    const auto& on = sink.ops[1];
    EXPECT_EQ(on.phase, Phase::Online);
    EXPECT_EQ(on.nid, 1);  // from the recorded add
    EXPECT_EQ(on.mode, MemmapMode::PageAllocator);
    EXPECT_EQ(on.zone, "Movable");
    EXPECT_EQ(sink.ops[2].phase, Phase::Offline);
    const auto& rm = sink.ops[3];
    EXPECT_EQ(rm.phase, Phase::Remove);
    EXPECT_EQ(rm.nid, 1);
    EXPECT_EQ(rm.mode, MemmapMode::PageAllocator);
    EXPECT_EQ(rm.memmap.buddy_pages, 512u);
    EXPECT_EQ(rm.memmap.remote_pages, 512u);
    EXPECT_EQ(rm.memmap.pagetable_pages, 1u);
    EXPECT_EQ(rm.memmap.altmap_pages, 0u);

    const auto& s = stats();
    ASSERT_FALSE(s.present_bytes.empty());
    for (const auto& [node, bytes] : s.present_bytes) EXPECT_EQ(bytes, 0) << node;
    ASSERT_FALSE(s.memmap_bytes.empty());  // zero entries stay: gauges go back to 0
    for (const auto& [key, bytes] : s.memmap_bytes) EXPECT_EQ(bytes, 0) << source_name(std::get<0>(key));
    EXPECT_TRUE(s.memmap_bytes.count({MemmapSource::PageAllocator, 0}));
    // Counters stay.
    EXPECT_EQ(value_or_zero(s.memmap_pages, {MemmapSource::PageAllocator, 1, 0}), 512u);
    EXPECT_EQ(value_or_zero(s.free_bytes_consumed, 1), 513u * 4096u);
    for (Phase p : kAllPhases) {
        if (p == Phase::Populate) continue;
        EXPECT_EQ(value_or_zero(s.operations, {p, 1, MemmapMode::PageAllocator}), 1u) << phase_name(p);
    }
    EXPECT_EQ(s.orphan_page_events, 0u);
}

TEST_F(AggregatorTest, AltmapLifecycle) {
    mmo = true;
    add_altmap(1);
    agg().consume(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn + 512, kBlockPages - 512, 512));
    agg().consume(online_offline(MEMHP_EV_OFFLINE, 3, kHotPfn + 512, kBlockPages - 512, 512));
    agg().consume(page(MEMHP_EV_PAGE_FREE, 4, kBootPfn + 0x3000, 0, MEMHP_EV_REMOVE));
    agg().consume(remove(4, kHotPfn, kBlockPages, 512));
    EXPECT_EQ(sink.ops[1].mode, MemmapMode::Altmap);
    EXPECT_EQ(sink.ops[1].nid, 1);
    EXPECT_EQ(sink.ops[1].vmemmap_pages, 512u);
    const auto& rm = last();
    EXPECT_EQ(rm.mode, MemmapMode::Altmap);
    EXPECT_EQ(rm.memmap.altmap_pages, 512u);
    EXPECT_EQ(rm.memmap.local_pages, 512u);
    EXPECT_EQ(rm.memmap.pagetable_pages, 1u);
    for (const auto& [node, bytes] : stats().present_bytes) EXPECT_EQ(bytes, 0);
    for (const auto& [key, bytes] : stats().memmap_bytes) EXPECT_EQ(bytes, 0);
    EXPECT_EQ(value_or_zero(stats().operations, {Phase::Online, 1, MemmapMode::Altmap}), 1u);
    EXPECT_EQ(value_or_zero(stats().operations, {Phase::Remove, 1, MemmapMode::Altmap}), 1u);
}

TEST_F(AggregatorTest, RemoveOfSeveralAddedRangesSubtractsEach) {
    add_page_allocator(1, kHotPfn);
    add_altmap(2, kHotPfn + kBlockPages);
    add_page_allocator(3, kHotPfn + 4 * kBlockPages);  // outside the removed span: stays
    agg().consume(remove(4, kHotPfn, 2 * kBlockPages, 512));
    const auto& s = stats();
    EXPECT_EQ(value_or_zero(s.present_bytes, 1), static_cast<std::int64_t>(kBlockBytes));
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::PageAllocator, 0}), 512 * 4096);
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::PageTables, 0}), 4096);
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::Altmap, 1}), 0);
    agg().consume(remove(5, kHotPfn + 4 * kBlockPages, kBlockPages));
    EXPECT_EQ(last().nid, 1);
    for (const auto& [node, bytes] : s.present_bytes) EXPECT_EQ(bytes, 0);
    for (const auto& [key, bytes] : s.memmap_bytes) EXPECT_EQ(bytes, 0);
}

TEST_F(AggregatorTest, FailedOfflineCountsAFailure) {
    add_page_allocator(1);
    agg().consume(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages));
    agg().consume(online_offline(MEMHP_EV_OFFLINE, 3, kHotPfn, kBlockPages, 0, -16));
    const auto& s = stats();
    EXPECT_EQ(value_or_zero(s.failures, {Phase::Offline, 16}), 1u);
    EXPECT_EQ(s.failures.size(), 1u);
    EXPECT_EQ(value_or_zero(s.operations, {Phase::Offline, 1, MemmapMode::PageAllocator}), 1u);
    EXPECT_EQ(s.latency.at({Phase::Offline, 1, MemmapMode::PageAllocator}).count(), 1u);
    EXPECT_EQ(last().ret, -16);
    // Nothing went away.
    EXPECT_EQ(value_or_zero(s.present_bytes, 1), static_cast<std::int64_t>(kBlockBytes));
}

// Event v6: an online's sub-phases and the zone span reach the record and its
// JSON; slots without time are left out, "other" is always there.
TEST_F(AggregatorTest, SubPhasesAndZoneSpanReachTheRecord) {
    auto ev = online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages);
    ev.flags = MEMHP_F_SUB_PHASES | MEMHP_F_ZONE_SPAN;
    ev.sub_ns[MEMHP_SUB_OWN] = 100'000;
    ev.sub_ns[MEMHP_SUB_ONLINE_PAGES] = 400'000;
    ev.sub_ns[MEMHP_SUB_SET_ZONE_CONTIGUOUS] = 1'500'000;
    ev.zone_start_pfn = 0x140000;
    ev.zone_spanned_pages = 65536;
    agg().consume(ev);
    const auto j = to_json(last());
    ASSERT_TRUE(j.contains("sub_phases_ns")) << j.dump();
    EXPECT_EQ(j["sub_phases_ns"].size(), 3u) << j.dump();
    EXPECT_EQ(j["sub_phases_ns"]["set_zone_contiguous"], 1'500'000u);
    EXPECT_EQ(j["sub_phases_ns"]["online_pages"], 400'000u);
    EXPECT_EQ(j["sub_phases_ns"]["other"], 100'000u);
    std::uint64_t sum = 0;
    for (const auto& [k, v] : j["sub_phases_ns"].items()) sum += v.get<std::uint64_t>();
    EXPECT_EQ(sum, j["duration_ns"].get<std::uint64_t>()) << "the slots add up to the op's own time";
    EXPECT_FALSE(j.contains("sub_phases_unbalanced"));
    EXPECT_EQ(j["zone_span"]["spanned_pages"], 65536u);
    // Without the flag (the tracepoint object, an older producer): no sub-phases at all.
    auto plain = online_offline(MEMHP_EV_ONLINE, 3, kHotPfn, kBlockPages);
    plain.sub_ns[MEMHP_SUB_ONLINE_PAGES] = 7;
    agg().consume(plain);
    EXPECT_FALSE(to_json(last()).contains("sub_phases_ns"));
    EXPECT_FALSE(to_json(last()).contains("zone_span"));
    EXPECT_STREQ(sub_phase_name(MEMHP_SUB_MOVE_PFN_RANGE_TO_ZONE), "move_pfn_range_to_zone");
    EXPECT_STREQ(sub_phase_name(MEMHP_SUB_SLOTS), "unknown");
}

TEST_F(AggregatorTest, FailedRemoveKeepsTheGauges) {
    add_page_allocator(1);
    agg().consume(remove(2, kHotPfn, kBlockPages, 0, -16));
    const auto& s = stats();
    EXPECT_EQ(value_or_zero(s.failures, {Phase::Remove, 16}), 1u);
    EXPECT_EQ(value_or_zero(s.present_bytes, 1), static_cast<std::int64_t>(kBlockBytes));
    EXPECT_EQ(value_or_zero(s.memmap_bytes, {MemmapSource::PageAllocator, 0}), 512 * 4096);
    // The range is still known: a retry finds it.
    agg().consume(remove(3, kHotPfn, kBlockPages));
    for (const auto& [key, bytes] : s.memmap_bytes) EXPECT_EQ(bytes, 0);
}

// memhp started after the add: the remove is reported, the live gauges stay
// where they were instead of going negative.
TEST_F(AggregatorTest, RemoveOfAnUnseenAddLeavesTheGaugesAlone) {
    agg().consume(remove(1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().phase, Phase::Remove);
    for (const auto& [node, bytes] : stats().present_bytes) EXPECT_GE(bytes, 0) << "node " << node;
    for (const auto& [key, bytes] : stats().memmap_bytes) EXPECT_GE(bytes, 0);
}

TEST_F(AggregatorTest, OnlineOfUnknownMemoryFallsBackToTheResolver) {
    agg().consume(online_offline(MEMHP_EV_ONLINE, 1, kHotPfn, kBlockPages, 512));
    EXPECT_EQ(last().nid, 1);
    EXPECT_EQ(last().mode, MemmapMode::Altmap);
    agg().consume(online_offline(MEMHP_EV_ONLINE, 2, kBootPfn, kBlockPages, 0));
    EXPECT_EQ(last().nid, 0);
    EXPECT_EQ(last().mode, MemmapMode::PageAllocator);
    // An explicit node wins; no lookup needed.
    const int before = nodes.lookups;
    agg().consume(online_offline(MEMHP_EV_ONLINE, 3, kHotPfn, kBlockPages, 0, 0, 3));
    EXPECT_EQ(last().nid, 3);
    EXPECT_EQ(nodes.lookups, before);
}

TEST_F(AggregatorTest, ZoneNeedsNoTerminator) {
    auto ev = online_offline(MEMHP_EV_ONLINE, 1, kHotPfn, kBlockPages);
    std::memset(ev.zone, 'Z', sizeof ev.zone);
    agg().consume(ev);
    EXPECT_EQ(last().zone, std::string(16, 'Z'));
}

// ---- sinks and buffering ---------------------------------------------------------------

TEST_F(AggregatorTest, SinksReceiveOperationsInOrder) {
    Recorder second;
    agg().add_sink(&second);
    agg().add_sink(nullptr);  // ignored
    add_page_allocator(10);
    agg().consume(online_offline(MEMHP_EV_ONLINE, 11, kHotPfn, kBlockPages));
    agg().consume(online_offline(MEMHP_EV_OFFLINE, 12, kHotPfn, kBlockPages));
    agg().consume(remove(13, kHotPfn, kBlockPages));
    for (const auto* r : {&sink, &second}) {
        ASSERT_EQ(r->ops.size(), 4u);
        EXPECT_EQ(r->ops[0].phase, Phase::Add);
        EXPECT_EQ(r->ops[1].phase, Phase::Online);
        EXPECT_EQ(r->ops[2].phase, Phase::Offline);
        EXPECT_EQ(r->ops[3].phase, Phase::Remove);
        for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(r->ops[i].op_id, 10 + i);
    }
}

TEST_F(AggregatorTest, PendingOpsAreBounded) {
    // 4097 ops whose end never comes: the oldest one's page events are dropped.
    for (std::uint64_t id = 1; id <= 4097; ++id) agg().consume(page(MEMHP_EV_PAGE_ALLOC, id, kBootPfn, 9));
    EXPECT_EQ(stats().orphan_page_events, 1u);
    agg().consume(add(1, 1, kHotPfn, kBlockPages));  // its pages are gone
    EXPECT_EQ(last().memmap.buddy_pages, 0u);
    agg().consume(add(2, 1, kHotPfn + kBlockPages, kBlockPages));  // the next one is intact
    EXPECT_EQ(last().memmap.buddy_pages, 512u);
    agg().consume(add(4097, 1, kHotPfn + 2 * kBlockPages, kBlockPages));
    EXPECT_EQ(last().memmap.buddy_pages, 512u);
    EXPECT_EQ(stats().orphan_page_events, 1u);
}

TEST_F(AggregatorTest, PageEventsPerOpAreBounded) {
    for (int i = 0; i < 65536 + 10; ++i) agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 0));
    EXPECT_EQ(stats().orphan_page_events, 10u);
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().memmap.pagetable_pages, 65536u);
}

TEST_F(AggregatorTest, OnlineConsumesItsPageEvents) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 5, kBootPfn, 0, MEMHP_EV_ONLINE));
    agg().consume(online_offline(MEMHP_EV_ONLINE, 5, kHotPfn, kBlockPages));
    // A later add reusing nothing: op 5 is gone from the buffer.
    for (std::uint64_t id = 100; id < 100 + 4096; ++id) agg().consume(page(MEMHP_EV_PAGE_ALLOC, id, kBootPfn, 0));
    EXPECT_EQ(stats().orphan_page_events, 0u);
}

TEST_F(AggregatorTest, AbsurdOrderIsADecodeError) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 64));
    EXPECT_EQ(stats().decode_errors, 1u);
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().free_bytes_consumed, 0u);
}

// ---- JSON ------------------------------------------------------------------------------

TEST_F(AggregatorTest, JsonOfAdd) {
    mmo = true;
    for (int i = 0; i < 8; ++i) agg().consume(page(MEMHP_EV_PAGE_ALLOC, 3, kBootPfn + 512u * i, 9));
    agg().consume(add(3, 1, kHotPfn, 8 * kBlockPages, 0, 0, 2));
    auto j = to_json(last());
    EXPECT_EQ(j["schema"], 4);
    EXPECT_EQ(j["schema"], kTraceJsonSchema);
    EXPECT_EQ(j["phase"], "add");
    EXPECT_EQ(j["op_id"], 3u);
    EXPECT_EQ(j["tid"], 4242u);
    EXPECT_EQ(j["ts_ns"], 1003u);
    EXPECT_EQ(j["nid"], 1);
    EXPECT_EQ(j["start_pfn"], kHotPfn);
    EXPECT_EQ(j["nr_pages"], 8 * kBlockPages);
    EXPECT_EQ(j["ret"], 0);
    EXPECT_EQ(j["duration_ns"], 5'000'000u);
    EXPECT_EQ(j["mode"], "page_allocator");
    EXPECT_EQ(j["caller"], "add_memory");
    EXPECT_EQ(j["mhp_flags"], 2u);
    EXPECT_EQ(j["free_bytes_consumed"], 4096u * 4096u);
    EXPECT_EQ(j["memmap_on_memory_unused"], true);
    EXPECT_THAT(j["unused_reason"].get<std::string>(), HasSubstr("spans 8 memory blocks"));
    const auto& m = j["memmap"];
    EXPECT_EQ(m["altmap_pages"], 0u);
    EXPECT_EQ(m["buddy_pages"], 4096u);
    EXPECT_EQ(m["pagetable_pages"], 0u);
    EXPECT_EQ(m["other_pages"], 0u);
    EXPECT_EQ(m["local_pages"], 0u);
    EXPECT_EQ(m["remote_pages"], 4096u);
    EXPECT_FALSE(j.contains("zone"));
    EXPECT_FALSE(j.contains("direct"));
}

// ---- call sites and the page->flags cross-check --------------------------------

memhp_event sited(std::uint64_t op_id, std::uint64_t pfn, std::uint32_t order, std::uint32_t site, int page_nid) {
    auto ev = page(MEMHP_EV_PAGE_ALLOC, op_id, pfn, order);
    ev.site = site;
    if (page_nid >= 0) {
        ev.page_nid = page_nid;
        ev.flags |= MEMHP_F_PAGE_NID;
    }
    return ev;
}

// What 6.1 really hands out for a memmap_on_memory=0 add (kernel stacks in
// the guest): the order-9 memmap under vmemmap_alloc_block, one direct-map
// PMD page under init_memory_mapping, slab pages for sysfs.
TEST_F(AggregatorTest, CallSiteDecidesTheClassNotTheOrder) {
    agg().consume(sited(1, kBootPfn, 9, MEMHP_SITE_MEMMAP, 0));
    agg().consume(sited(1, kBootPfn + 0x2000, 0, MEMHP_SITE_PAGETABLE, 0));
    agg().consume(sited(1, kBootPfn + 0x2001, 0, MEMHP_SITE_OTHER, 0));
    agg().consume(sited(1, kBootPfn + 0x2002, 0, MEMHP_SITE_OTHER, 0));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    const auto& m = last().memmap;
    EXPECT_EQ(m.buddy_pages, 512u);
    EXPECT_EQ(m.pagetable_pages, 1u);
    EXPECT_EQ(m.other_pages, 2u) << "slab pages are not page tables";
    EXPECT_EQ(m.remote_pages, 512u);
    EXPECT_EQ(last().free_bytes_consumed, 515u * kPage);
    EXPECT_EQ(value_or_zero(stats().memmap_pages, {MemmapSource::PageTables, 1, 0}), 1u);
}

TEST_F(AggregatorTest, BasePageMemmapFromVmemmapAllocBlockIsMemmap) {
    // Where huge pages fail, vmemmap_populate_basepages() takes order-0 struct pages.
    for (int i = 0; i < 4; ++i) agg().consume(sited(1, kBootPfn + i, 0, MEMHP_SITE_MEMMAP, 0));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().memmap.buddy_pages, 4u);
    EXPECT_EQ(last().memmap.pagetable_pages, 0u);
    EXPECT_EQ(last().memmap.base_pages, 4u) << "the scenarios count the base-page fallback from this";
    EXPECT_EQ(to_json(last())["memmap"]["base_pages"], 4);
}

// Under fragmentation the memmap allocation's own reclaim frees hundreds of
// pages during the add; BPF sums those (and slab-type allocations) in the
// add's event instead of sending one event each, which overran the ring buffer.
TEST_F(AggregatorTest, PagesSummedInBpfCountAsCostButNotAsMemmap) {
    for (int i = 0; i < 512; ++i) agg().consume(sited(1, kBootPfn + i, 0, MEMHP_SITE_MEMMAP, 0));
    agg().consume(sited(1, kBootPfn + 0x2000, 0, MEMHP_SITE_OTHER, 0));
    auto ev = add(1, 1, kHotPfn, kBlockPages);
    ev.summed_other_pages = 3;
    ev.summed_freed_pages = 500;
    agg().consume(ev);
    const auto& op = last();
    EXPECT_EQ(op.memmap.base_pages, 512u) << "the summed pages are not memmap";
    EXPECT_EQ(op.memmap.buddy_pages, 512u);
    EXPECT_EQ(op.memmap.other_pages, 4u) << "one sent as an event, three summed";
    EXPECT_EQ(op.free_bytes_consumed, (512u + 4u - 500u) * kPage);

    auto more = add(2, 1, kHotPfn + kBlockPages, kBlockPages);
    more.summed_freed_pages = 10000;  // reclaim gave back more than the add took
    agg().consume(more);
    EXPECT_EQ(last().free_bytes_consumed, 0u);
}

TEST_F(AggregatorTest, PmdMemmapHasNoBasePages) {
    agg().consume(sited(1, kBootPfn, 9, MEMHP_SITE_MEMMAP, 0));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().memmap.base_pages, 0u);
}

TEST_F(AggregatorTest, UnknownSiteFallsBackToTheOrder) {
    agg().consume(sited(1, kBootPfn, 9, MEMHP_SITE_UNKNOWN, -1));
    agg().consume(sited(1, kBootPfn + 0x2000, 0, MEMHP_SITE_UNKNOWN, -1));
    agg().consume(sited(1, kBootPfn + 0x2008, 3, MEMHP_SITE_UNKNOWN, -1));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    const auto& m = last().memmap;
    EXPECT_EQ(m.buddy_pages, 512u);
    EXPECT_EQ(m.pagetable_pages, 1u);
    EXPECT_EQ(m.other_pages, 8u);
    EXPECT_EQ(last().node_checked_pages, 0u) << "no page->flags node: nothing to check";
}

TEST_F(AggregatorTest, PageFlagsNodeAgreeingWithSysfsIsCheckedNotFlagged) {
    agg().consume(sited(1, kBootPfn, 9, MEMHP_SITE_MEMMAP, 0));
    agg().consume(sited(1, kBootPfn + 0x2000, 0, MEMHP_SITE_PAGETABLE, 0));
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().node_checked_pages, 513u);
    EXPECT_EQ(last().node_mismatched_pages, 0u);
    EXPECT_EQ(stats().node_mismatched_pages, 0u);
    auto j = to_json(last());
    EXPECT_EQ(j["node_check"]["pages"], 513u);
    EXPECT_EQ(j["node_check"]["mismatched"], 0u);
}

TEST_F(AggregatorTest, PageFlagsNodeDisagreeingWithSysfsIsCountedAndSysfsWins) {
    agg().consume(sited(1, kBootPfn, 9, MEMHP_SITE_MEMMAP, 1));  // sysfs says node 0
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().node_checked_pages, 512u);
    EXPECT_EQ(last().node_mismatched_pages, 512u);
    EXPECT_EQ(stats().node_mismatched_pages, 512u);
    EXPECT_EQ(last().memmap.remote_pages, 512u) << "the sysfs map decides locality";
}

// A resolver that knows no block (e.g. sysfs not yet updated).
class NoNodes : public NodeResolver {
public:
    int node_of_pfn(std::uint64_t) override { return -1; }
};

TEST(AggregatorNodes, PageFlagsNodeFillsInWhereSysfsKnowsNothing) {
    NoNodes nodes;
    Aggregator agg(nodes, AggregatorConfig{});
    Recorder sink;
    agg.add_sink(&sink);
    agg.consume(sited(1, kBootPfn, 9, MEMHP_SITE_MEMMAP, 1));
    agg.consume(add(1, 1, kHotPfn, kBlockPages));
    ASSERT_EQ(sink.ops.size(), 1u);
    EXPECT_EQ(sink.ops[0].memmap.local_pages, 512u);
    EXPECT_EQ(sink.ops[0].node_checked_pages, 0u);
}

TEST_F(AggregatorTest, ZeroFilledPageNidWithoutTheFlagIsUnknown) {
    auto ev = page(MEMHP_EV_PAGE_ALLOC, 1, kNode1Start + 5, 9);  // node 1 by sysfs, page_nid 0, no flag
    agg().consume(ev);
    agg().consume(add(1, 1, kHotPfn, kBlockPages));
    EXPECT_EQ(last().node_checked_pages, 0u);
    EXPECT_EQ(last().node_mismatched_pages, 0u);
}

TEST_F(AggregatorTest, RemoveChecksFreedPagesToo) {
    add_page_allocator(1);
    agg().consume(sited(2, kBootPfn, 9, MEMHP_SITE_UNKNOWN, 0));
    auto freed = page(MEMHP_EV_PAGE_FREE, 2, kBootPfn, 9, MEMHP_EV_REMOVE);
    freed.page_nid = 1;
    freed.flags |= MEMHP_F_PAGE_NID;
    agg().consume(freed);
    agg().consume(remove(2, kHotPfn, kBlockPages));
    EXPECT_EQ(last().memmap.buddy_pages, 512u);
    EXPECT_EQ(last().node_mismatched_pages, 512u);
}

TEST_F(AggregatorTest, JsonOmitsUnusedReasonWhenUsed) {
    mmo = true;
    add_altmap(1);
    auto j = to_json(last());
    EXPECT_EQ(j["mode"], "altmap");
    EXPECT_EQ(j["memmap_on_memory_unused"], false);
    EXPECT_FALSE(j.contains("unused_reason"));
}

TEST_F(AggregatorTest, JsonOfOtherPhases) {
    add_page_allocator(1);
    agg().consume(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages));
    agg().consume(remove(3, kHotPfn, kBlockPages, 0, -16));
    auto pop = event(MEMHP_EV_POPULATE, 4);
    pop.flags = MEMHP_F_POPULATE_DIRECT;
    agg().consume(pop);

    auto on = to_json(sink.ops[1]);
    EXPECT_EQ(on["phase"], "online");
    EXPECT_EQ(on["zone"], "Movable");
    EXPECT_EQ(on["vmemmap_pages"], 0u);
    EXPECT_FALSE(on.contains("memmap"));
    EXPECT_FALSE(on.contains("caller"));

    auto rm = to_json(sink.ops[2]);
    EXPECT_EQ(rm["phase"], "remove");
    EXPECT_EQ(rm["ret"], -16);
    EXPECT_TRUE(rm.contains("memmap"));
    EXPECT_FALSE(rm.contains("caller"));
    EXPECT_FALSE(rm.contains("zone"));

    auto p = to_json(sink.ops[3]);
    EXPECT_EQ(p["phase"], "populate");
    EXPECT_EQ(p["direct"], true);
    EXPECT_EQ(p["nid"], -1);
    EXPECT_FALSE(p.contains("memmap"));

    // One line each: NDJSON.
    for (const auto& op : sink.ops) EXPECT_EQ(to_json(op).dump().find('\n'), std::string::npos);
}

}  // namespace
}  // namespace memhp::collector

// ---- nested phases (auto-online: the online runs inside its add) ----------------------

namespace memhp::collector {
namespace {

memhp_event nested_in(memhp_event ev, std::uint64_t parent, std::uint32_t parent_type) {
    ev.parent_op_id = parent;
    ev.op_type = parent_type;
    return ev;
}

memhp_event with_nested(memhp_event ev, std::uint64_t nested_ns, std::uint32_t nested_ops) {
    ev.nested_ns = nested_ns;
    ev.nested_ops = nested_ops;
    return ev;
}

TEST_F(AggregatorTest, OnlineInsideAddIsItsOwnRecordAndTheAddsTimeIsItsOwn) {
    // BPF order: the add's page events, the nested online's (its own op id),
    // the online's end, then the add's end carrying the nested time.
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 2, kBootPfn + 0x4000, 0, MEMHP_EV_ONLINE));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 2, kBootPfn + 0x4001, 0, MEMHP_EV_ONLINE));
    agg().consume(nested_in(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages, 0, 0, 1), 1, MEMHP_EV_ADD));
    agg().consume(with_nested(add(1, 1, kHotPfn, kBlockPages), 2'000'000, 1));
    ASSERT_EQ(sink.ops.size(), 2u);
    const Operation& online = sink.ops[0];
    EXPECT_EQ(online.phase, Phase::Online);
    EXPECT_EQ(online.parent_op_id, 1u);
    ASSERT_TRUE(online.parent_phase);
    EXPECT_EQ(*online.parent_phase, Phase::Add);
    EXPECT_EQ(online.duration_ns, 2'000'000u);
    EXPECT_EQ(online.free_bytes_consumed, 2 * kPage);
    const Operation& a = sink.ops[1];
    EXPECT_EQ(a.phase, Phase::Add);
    EXPECT_EQ(a.parent_op_id, 0u);
    EXPECT_FALSE(a.parent_phase);
    EXPECT_EQ(a.inclusive_ns, 5'000'000u);
    EXPECT_EQ(a.nested_ns, 2'000'000u);
    EXPECT_EQ(a.nested_ops, 1u);
    EXPECT_EQ(a.duration_ns, 3'000'000u);  // own time
    // The online's pages are its own: the add's memmap is unchanged.
    EXPECT_EQ(a.memmap.buddy_pages, 512u);
    EXPECT_EQ(a.memmap.pagetable_pages, 0u);
    EXPECT_EQ(a.free_bytes_consumed, 512 * kPage);
    EXPECT_EQ(a.free_bytes_consumed_inclusive, 514 * kPage);
    // Histograms: each phase its own time.
    EXPECT_EQ(stats().latency.at({Phase::Add, 1, MemmapMode::PageAllocator}).sum_ns(), 3'000'000u);
    EXPECT_EQ(stats().latency.at({Phase::Online, 1, MemmapMode::PageAllocator}).sum_ns(), 2'000'000u);
    EXPECT_EQ(value_or_zero(stats().nested, std::make_tuple(Phase::Online, Phase::Add)), 1u);
    EXPECT_EQ(stats().nested.size(), 1u);
}

TEST_F(AggregatorTest, TheOnlinedRangeGoingToTheAllocatorIsNotACost) {
    // online_pages() frees the new block into the page allocator: 64 order-9
    // frees inside the range. They must not cancel the add's memmap.
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 2, kBootPfn + 0x4000, 0, MEMHP_EV_ONLINE));
    for (std::uint64_t i = 0; i < 64; ++i)
        agg().consume(page(MEMHP_EV_PAGE_FREE, 2, kHotPfn + 512 * i, 9, MEMHP_EV_ONLINE));
    agg().consume(nested_in(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages, 0, 0, 1), 1, MEMHP_EV_ADD));
    EXPECT_EQ(last().free_bytes_consumed, kPage);
    agg().consume(with_nested(add(1, 1, kHotPfn, kBlockPages), 2'000'000, 1));
    EXPECT_EQ(last().free_bytes_consumed, 512 * kPage);
    EXPECT_EQ(last().free_bytes_consumed_inclusive, 513 * kPage);
}

TEST_F(AggregatorTest, VirtioMemStyleEightBlocksEachWithItsOnline) {
    for (std::uint64_t b = 0; b < 8; ++b) {
        const std::uint64_t add_id = 10 + 2 * b, online_id = add_id + 1;
        const std::uint64_t pfn = kHotPfn + b * kBlockPages;
        agg().consume(page(MEMHP_EV_PAGE_ALLOC, add_id, kBootPfn + 512 * b, 9));
        agg().consume(
            nested_in(online_offline(MEMHP_EV_ONLINE, online_id, pfn, kBlockPages, 0, 0, 1), add_id, MEMHP_EV_ADD));
        agg().consume(
            with_nested(add(add_id, 1, pfn, kBlockPages, 0, 0, 0, MEMHP_CALLER_DRIVER_MANAGED), 1'500'000, 1));
    }
    EXPECT_EQ(value_or_zero(stats().nested, std::make_tuple(Phase::Online, Phase::Add)), 8u);
    EXPECT_EQ(value_or_zero(stats().operations, std::make_tuple(Phase::Online, 1, MemmapMode::PageAllocator)), 8u);
    EXPECT_EQ(value_or_zero(stats().operations, std::make_tuple(Phase::Add, 1, MemmapMode::PageAllocator)), 8u);
    EXPECT_EQ(value_or_zero(stats().memmap_pages, std::make_tuple(MemmapSource::PageAllocator, 1, 0)), 4096u);
    EXPECT_EQ(stats().latency.at({Phase::Add, 1, MemmapMode::PageAllocator}).sum_ns(), 8 * 3'500'000u);
    EXPECT_EQ(last().caller, "driver_managed");
    // The online knew the range from its add: the add's mode.
    EXPECT_EQ(sink.ops[sink.ops.size() - 2].mode, MemmapMode::PageAllocator);
}

TEST_F(AggregatorTest, OfflineInsideRemoveIsNested) {
    add_page_allocator(1);
    agg().consume(nested_in(online_offline(MEMHP_EV_OFFLINE, 3, kHotPfn, kBlockPages, 0, 0, 1), 2, MEMHP_EV_REMOVE));
    agg().consume(page(MEMHP_EV_PAGE_FREE, 2, kBootPfn, 9, MEMHP_EV_REMOVE));
    agg().consume(with_nested(remove(2, kHotPfn, kBlockPages), 1'000'000, 1));
    EXPECT_EQ(value_or_zero(stats().nested, std::make_tuple(Phase::Offline, Phase::Remove)), 1u);
    EXPECT_EQ(last().phase, Phase::Remove);
    EXPECT_EQ(last().duration_ns, 2'000'000u);
    EXPECT_EQ(last().inclusive_ns, 3'000'000u);
    EXPECT_EQ(last().memmap.buddy_pages, 512u);
    EXPECT_EQ(value_or_zero(stats().present_bytes, 1), 0);
}

// The patched kernels' mhp_memmap_alloc sums (MEMHP_F_MEMMAP_EVENTS).
memhp_event with_memmap_events(memhp_event ev, std::uint64_t buddy, std::uint64_t remote, std::uint64_t base = 0,
                               std::uint64_t altmap = 0, std::uint32_t failed = 0) {
    ev.flags |= MEMHP_F_MEMMAP_EVENTS;
    ev.memmap_buddy_pages = buddy;
    ev.memmap_remote_pages = remote;
    ev.memmap_base_pages = base;
    ev.memmap_altmap_pages = altmap;
    ev.memmap_failed = failed;
    return ev;
}

TEST_F(AggregatorTest, MemmapEventsAgreeingWithThePageEvents) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn + 0x2000, 0));
    agg().consume(with_memmap_events(add(1, 1, kHotPfn, kBlockPages), 512, 512));
    const auto& op = last();
    ASSERT_TRUE(op.memmap_events);
    EXPECT_TRUE(op.memmap_events->agree);
    EXPECT_EQ(op.memmap.buddy_pages, 512u);
    EXPECT_EQ(op.memmap.remote_pages, 512u);
    EXPECT_EQ(op.memmap.local_pages, 0u);
    EXPECT_EQ(op.memmap.pagetable_pages, 1u);
    EXPECT_EQ(stats().memmap_event_disagreements, 0u);
    const auto j = to_json(op);
    EXPECT_EQ(j["memmap_from"], "memmap_events");
    EXPECT_EQ(j["memmap_events"]["page_event_huge_pages"], 512);
    EXPECT_EQ(j["memmap_events"]["agree"], true);
}

// The case the order cannot get right: no PMD block was free, so the vmemmap
// is mapped with 512 base pages, which by order look like page tables.
TEST_F(AggregatorTest, MemmapEventsTellABasePageFallbackFromPageTables) {
    for (std::uint64_t i = 0; i < 513; ++i) agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn + 0x4000 + i, 0));
    agg().consume(with_memmap_events(add(1, 1, kHotPfn, kBlockPages), 512, 512, 512));
    const auto& op = last();
    EXPECT_EQ(op.memmap.buddy_pages, 512u);
    EXPECT_EQ(op.memmap.base_pages, 512u);
    EXPECT_EQ(op.memmap.pagetable_pages, 1u) << "513 order-0 pages: 512 were the memmap";
    EXPECT_TRUE(op.memmap_events->agree);
    // Without the events, the same pages are 513 page tables and no memmap.
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 2, kBootPfn + 0x5000, 0));
    agg().consume(add(2, 1, kHotPfn + kBlockPages, kBlockPages));
    EXPECT_FALSE(last().memmap_events);
    EXPECT_EQ(to_json(last())["memmap_from"], "page_events");
}

TEST_F(AggregatorTest, MemmapEventsThatDisagreeAreCountedAndTheEventsWin) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(with_memmap_events(add(1, 1, kHotPfn, kBlockPages), 1024, 0));  // a lost page event
    EXPECT_FALSE(last().memmap_events->agree);
    EXPECT_EQ(last().memmap.buddy_pages, 1024u);
    EXPECT_EQ(last().memmap.local_pages, 1024u);
    EXPECT_EQ(stats().memmap_event_disagreements, 1u);
    // The altmap count of the add end and the events' must match too.
    agg().consume(
        with_memmap_events(add(2, 1, kHotPfn + kBlockPages, kBlockPages, MEMHP_F_ALTMAP, 512, 2), 0, 0, 0, 256));
    EXPECT_FALSE(last().memmap_events->agree);
    EXPECT_EQ(stats().memmap_event_disagreements, 2u);
}

TEST_F(AggregatorTest, MemmapEventsNeverCountMoreRemoteThanTaken) {
    agg().consume(with_memmap_events(add(1, 1, kHotPfn, kBlockPages), 512, 9999, 9999, 0, 3));
    EXPECT_EQ(last().memmap.remote_pages, 512u);
    EXPECT_EQ(last().memmap.base_pages, 512u);
    EXPECT_EQ(last().memmap.local_pages, 0u);
    EXPECT_EQ(last().memmap_events->failed_blocks, 3u);
}

memhp_event with_kernel_memmap(memhp_event ev, std::int64_t before, std::int64_t after) {
    ev.flags |= MEMHP_F_KERNEL_MEMMAP;
    ev.kernel_memmap_before = before;
    ev.kernel_memmap_after = after;
    return ev;
}

// Linux 6.11+: nr_memmap_pages rises by what memhp counted and falls back.
TEST_F(AggregatorTest, KernelMemmapCountBesideMemhpsOwn) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(with_kernel_memmap(add(1, 1, kHotPfn, kBlockPages), 16384, 16896));
    ASSERT_TRUE(last().kernel_memmap);
    EXPECT_EQ(last().kernel_memmap->delta(), 512);
    EXPECT_TRUE(last().kernel_memmap->matches());
    auto j = to_json(last());
    EXPECT_EQ(j["kernel_memmap_pages"]["delta"], 512);
    EXPECT_EQ(j["kernel_memmap_pages"]["memhp_pages"], 512);
    EXPECT_EQ(j["kernel_memmap_pages"]["matches"], true);
    agg().consume(page(MEMHP_EV_PAGE_FREE, 2, kBootPfn, 9, MEMHP_EV_REMOVE));
    agg().consume(with_kernel_memmap(remove(2, kHotPfn, kBlockPages), 16896, 16384));
    EXPECT_EQ(last().kernel_memmap->memhp_pages, -512);
    EXPECT_TRUE(last().kernel_memmap->matches());
    EXPECT_EQ(stats().kernel_memmap_pages, 16384);
    EXPECT_EQ(stats().kernel_memmap_mismatches, 0u);
    // An altmap add counts too: the kernel counts altmap pages as memmap.
    agg().consume(with_kernel_memmap(add(3, 1, kHotPfn, kBlockPages, MEMHP_F_ALTMAP, 512, 2), 16384, 16896));
    EXPECT_TRUE(last().kernel_memmap->matches());
}

TEST_F(AggregatorTest, KernelMemmapMismatchIsCountedOnlyForSuccessfulOps) {
    agg().consume(page(MEMHP_EV_PAGE_ALLOC, 1, kBootPfn, 9));
    agg().consume(with_kernel_memmap(add(1, 1, kHotPfn, kBlockPages), 0, 1024));  // another add ran alongside
    EXPECT_FALSE(last().kernel_memmap->matches());
    EXPECT_EQ(stats().kernel_memmap_mismatches, 1u);
    agg().consume(
        with_kernel_memmap(add(2, 1, kHotPfn, kBlockPages, 0, 0, 0, MEMHP_CALLER_ADD_MEMORY, -12), 1024, 1536));
    EXPECT_EQ(stats().kernel_memmap_mismatches, 1u) << "a failed add is not held to the count";
    // Kernels before 6.11, or a read that failed: no record, no gauge change.
    agg().consume(add(3, 1, kHotPfn, kBlockPages));
    EXPECT_FALSE(last().kernel_memmap);
    EXPECT_FALSE(to_json(last()).contains("kernel_memmap_pages"));
    agg().consume(with_kernel_memmap(add(4, 1, kHotPfn, kBlockPages), -1, 512));
    EXPECT_FALSE(last().kernel_memmap);
    EXPECT_EQ(stats().kernel_memmap_pages, 1536);
}

TEST_F(AggregatorTest, FailedNestedOnlineCountsItsFailureAndTheAddStands) {
    agg().consume(nested_in(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages, 0, -16, 1), 1, MEMHP_EV_ADD));
    agg().consume(with_nested(add(1, 1, kHotPfn, kBlockPages), 4'000'000, 1));
    EXPECT_EQ(value_or_zero(stats().failures, std::make_tuple(Phase::Online, 16)), 1u);
    EXPECT_EQ(value_or_zero(stats().failures, std::make_tuple(Phase::Add, 16)), 0u);
    EXPECT_EQ(value_or_zero(stats().nested, std::make_tuple(Phase::Online, Phase::Add)), 1u);
    EXPECT_EQ(last().ret, 0);
    EXPECT_EQ(last().duration_ns, 1'000'000u);
    EXPECT_EQ(value_or_zero(stats().present_bytes, 1), static_cast<std::int64_t>(kBlockBytes));
}

TEST_F(AggregatorTest, CorruptNestedTimeCannotExceedTheDuration) {
    agg().consume(with_nested(add(1, 1, kHotPfn, kBlockPages), 9'000'000'000, 1));
    EXPECT_EQ(last().duration_ns, 0u);
    EXPECT_EQ(last().nested_ns, 5'000'000u);
}

TEST_F(AggregatorTest, NestedPageMemoryIsBounded) {
    // Nested ops whose parent never ends leave no unbounded state behind.
    for (std::uint64_t i = 0; i < 10000; ++i)
        agg().consume(
            nested_in(online_offline(MEMHP_EV_ONLINE, 100000 + i, kHotPfn, kBlockPages), i + 1, MEMHP_EV_ADD));
    agg().consume(with_nested(add(10000, 1, kHotPfn, kBlockPages), 1, 1));
    EXPECT_EQ(last().free_bytes_consumed_inclusive, 0u);
    EXPECT_EQ(value_or_zero(stats().nested, std::make_tuple(Phase::Online, Phase::Add)), 10000u);
}

TEST_F(AggregatorTest, JsonOfNestedOps) {
    agg().consume(nested_in(online_offline(MEMHP_EV_ONLINE, 2, kHotPfn, kBlockPages, 0, 0, 1), 1, MEMHP_EV_ADD));
    auto on = to_json(last());
    EXPECT_EQ(on["parent_op_id"], 1u);
    EXPECT_EQ(on["parent_phase"], "add");
    EXPECT_EQ(on["free_bytes_consumed"], 0u);
    agg().consume(with_nested(add(1, 1, kHotPfn, kBlockPages), 2'000'000, 1));
    auto j = to_json(last());
    EXPECT_EQ(j["duration_ns"], 3'000'000u);
    EXPECT_EQ(j["inclusive_ns"], 5'000'000u);
    EXPECT_EQ(j["nested_ns"], 2'000'000u);
    EXPECT_EQ(j["nested_ops"], 1u);
    EXPECT_EQ(j["parent_op_id"], 0u);
    EXPECT_FALSE(j.contains("parent_phase"));
    EXPECT_TRUE(j.contains("free_bytes_consumed_inclusive"));
}

}  // namespace
}  // namespace memhp::collector
