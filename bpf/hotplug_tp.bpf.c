// SPDX-License-Identifier: GPL-2.0-only
/* memhp's hot-plug probes on the memory_hotplug trace events that
 * kernel-patches/ adds to the kernel.
 *
 * The loader picks this object instead of hotplug.bpf.c when the running
 * kernel's BTF has btf_trace_mhp_add_memory_begin. It sends the very records
 * hotplug.bpf.c sends (memhp_event.h), so the aggregator cannot tell the two
 * apart, except that every populate record here is timed at the section's
 * own begin/end events (MEMHP_F_POPULATE_DIRECT): nothing is inferred.
 *
 * An add's memmap classes come from mhp_memmap_alloc, once per memmap
 * block: altmap, huge block or base page, the node asked for and the node
 * obtained, or a failed allocation (summed per op, sent with the add as
 * MEMHP_F_MEMMAP_EVENTS). The page events (kmem:mm_page_alloc/mm_page_free)
 * still run, as in hotplug.bpf.c: for page tables and other pages, for the
 * memmap that remove gives back (no memory_hotplug event has it), and as a
 * cross-check of the memmap events' count.
 *
 * The per-task operation helpers are hotplug.bpf.c's (hotplug_ops.bpf.h).
 *
 * Two versions of the events exist (kernel-patches/6.1 and 7.2). They differ
 * in two arguments, told apart with CO-RE on the events' entry structs:
 * - add_end's 5th and remove_end's 4th argument: 6.1 passes the one
 *   struct vmem_altmap * of the add (its `alloc` is the memmap pages); 7.2,
 *   where every memory block has its own altmap, passes the memmap pages
 *   summed over them (entry field memmap_pages instead of altmap_pages);
 * - 7.2's add_begin has a 5th argument, driver_managed (virtio-mem,
 *   dax/kmem: add_memory_driver_managed()), which 6.1's lacks.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "memhp_event.h"

#define MAX_OPS 1024

/* enum mhp_memmap_source of include/trace/events/memory_hotplug.h; the
 * committed vmlinux.h comes from an unpatched kernel and lacks it. */
/* The fields that tell the two versions apart (see above): CO-RE finds
 * them in the running kernel's trace_event_raw_* structs, or not. */
struct trace_event_raw_mhp_add_memory_end___v72 {
	unsigned long memmap_pages;
} __attribute__((preserve_access_index));
struct trace_event_raw_mhp_remove_memory_end___v72 {
	unsigned long memmap_pages;
} __attribute__((preserve_access_index));
struct trace_event_raw_mhp_add_memory_begin___v72 {
	bool driver_managed;
} __attribute__((preserve_access_index));

#define MHP_MEMMAP_ALTMAP 0
#define MHP_MEMMAP_PAGE_ALLOC 1
#define MHP_MEMMAP_BASE_PAGES 2

struct op {
	__u64 id;
	__u64 t0;
	__u64 populate_t0;
	__u32 type;
	__s32 nid;
	__u64 start_pfn;
	__u64 nr_pages;
	__u64 mhp_flags;
	__u64 altmap_pages;
	__u64 vmemmap_pages;
	__u32 flags;
	__u32 nested_count;
	__u32 caller;
	char zone[16];
	__u64 parent_id;
	__u64 nested_ns;
	__u64 sp;
	__u32 parent_type;
	__u32 memmap_failed;
	__u64 memmap_altmap_pages;
	__u64 memmap_buddy_pages;
	__u64 memmap_remote_pages;
	__u64 memmap_base_pages;
	__s64 kernel_memmap_before; /* nr_memmap_pages at the begin, -1 unknown */
	__u64 summed_freed_pages;   /* add: see memhp_event */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OPS);
	__type(key, __u32); /* tid */
	__type(value, struct op);
} ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OPS);
	__type(key, __u32); /* tid */
	__type(value, struct op);
} outer_ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} events SEC(".maps");

volatile __u32 inflight = 0;
__u64 dropped_events = 0;
__u64 interrupt_page_events = 0;
__u64 stale_ops = 0;
__u64 ops_map_full = 0;
__u64 nest_overflow = 0;

#include "hotplug_ops.bpf.h"

/* mm/vmstat.c's static nr_memmap_pages (Linux 6.11+), resolved by libbpf
 * from kallsyms; weak, so 0 on 6.1. */
extern const void nr_memmap_pages __ksym __weak;

/* The kernel's own count of memmap pages (/proc/vmstat nr_memmap_pages), or
 * -1 on kernels without it. */
static __always_inline __s64 kernel_memmap_pages(void)
{
	__s64 v = -1;
	if (!(unsigned long)&nr_memmap_pages || bpf_probe_read_kernel(&v, sizeof(v), &nr_memmap_pages))
		v = -1;
	return v;
}

/* A begin event of the type already in flight on the task leaves it be; one
 * of another type (mhp_online_begin inside an add: auto-online) nests. */
static __always_inline struct op *op_start(__u32 type, void *ctx)
{
	return op_enter(type, false, ctx);
}

static __always_inline void op_finish(struct op *o, int ret)
{
	__u64 now = bpf_ktime_get_ns();
	struct memhp_event *e = reserve();
	if (e) {
		e->type = o->type;
		e->tid = tid();
		e->op_id = o->id;
		e->ts_ns = now;
		e->duration_ns = e->ts_ns - o->t0;
		e->nid = o->nid;
		e->ret = ret;
		e->start_pfn = o->start_pfn;
		e->nr_pages = o->nr_pages;
		e->mhp_flags = o->mhp_flags;
		e->altmap_pages = o->altmap_pages;
		e->vmemmap_pages = o->vmemmap_pages;
		e->flags = o->flags;
		e->caller = o->caller;
		e->parent_op_id = o->parent_id;
		e->nested_ns = o->nested_ns;
		e->nested_ops = o->nested_count;
		e->op_type = o->parent_id ? o->parent_type : 0;
		e->memmap_altmap_pages = o->memmap_altmap_pages;
		e->memmap_buddy_pages = o->memmap_buddy_pages;
		e->memmap_remote_pages = o->memmap_remote_pages;
		e->memmap_base_pages = o->memmap_base_pages;
		e->memmap_failed = o->memmap_failed;
		e->summed_freed_pages = o->summed_freed_pages;
		if (o->type == MEMHP_EV_ADD || o->type == MEMHP_EV_REMOVE) {
			e->kernel_memmap_before = o->kernel_memmap_before;
			e->kernel_memmap_after = kernel_memmap_pages();
			if (e->kernel_memmap_before >= 0 && e->kernel_memmap_after >= 0)
				e->flags |= MEMHP_F_KERNEL_MEMMAP;
		}
		__builtin_memcpy(e->zone, o->zone, sizeof(e->zone));
		bpf_ringbuf_submit(e, 0);
	}
	op_end(now);
}

/* ---- add ---------------------------------------------------------------- */

/* Argument i of the event as a plain number. A pointer argument that may be
 * NULL (the populate events' altmap, 6.1's add_end altmap) must be read this
 * way: from 6.13 on the verifier takes tp_btf pointer arguments to be non-NULL
 * unless kernel/bpf/btf.c lists them (raw_tp_null_args), and drops the NULL
 * branch of a test on them. */
static __always_inline __u64 arg_value(unsigned long long *ctx, int i)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &ctx[i]);
	return v;
}

/* The memmap pages an end event reports: 7.2 passes the number, 6.1 the
 * add's struct vmem_altmap * (NULL without one). */
static __always_inline void memmap_pages_of(struct op *o, __u64 arg, bool is_count)
{
	__u64 pages = 0;
	if (is_count) {
		pages = arg;
	} else if (arg) {
		struct vmem_altmap *altmap = (struct vmem_altmap *)arg;
		pages = BPF_CORE_READ(altmap, alloc);
		o->flags |= MEMHP_F_ALTMAP; /* 6.1: an altmap, even if it supplied nothing */
	}
	if (pages) {
		o->flags |= MEMHP_F_ALTMAP;
		o->altmap_pages = pages;
	}
}

SEC("tp_btf/mhp_add_memory_begin")
int BPF_PROG(add_begin, int nid, u64 start, u64 size, int mhp_flags)
{
	struct op *o = op_start(MEMHP_EV_ADD, ctx);
	if (!o)
		return 0;
	o->nid = nid; /* a memory group id for ACPI DIMMs: add_end has the node */
	o->start_pfn = start >> 12;
	o->nr_pages = size >> 12;
	o->mhp_flags = (__u32)mhp_flags;
	o->kernel_memmap_before = kernel_memmap_pages();
	struct trace_event_raw_mhp_add_memory_begin___v72 *v72 = 0;
	if (bpf_core_field_exists(v72->driver_managed) && (ctx[4] & 0xff))
		o->caller = MEMHP_CALLER_DRIVER_MANAGED;
	return 0;
}

SEC("tp_btf/mhp_add_memory_end")
int BPF_PROG(add_end, int nid, u64 start, u64 size, int mhp_flags)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o)
		return 0;
	o->nid = nid;
	struct trace_event_raw_mhp_add_memory_end___v72 *v72 = 0;
	memmap_pages_of(o, arg_value(ctx, 4), bpf_core_field_exists(v72->memmap_pages));
	op_finish(o, (int)ctx[5]);
	return 0;
}

/* ---- vmemmap population, per section -------------------------------------- */

SEC("tp_btf/mhp_vmemmap_populate_begin")
int BPF_PROG(populate_begin)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (o)
		o->populate_t0 = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/mhp_vmemmap_populate_end")
int BPF_PROG(populate_end, unsigned long pfn, unsigned long nr_pages, int nid)
{
	const __u64 altmap = arg_value(ctx, 3);
	const int ret = (int)ctx[4];
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o || !o->populate_t0)
		return 0;
	struct memhp_event *e = reserve();
	if (!e)
		return 0;
	e->type = MEMHP_EV_POPULATE;
	e->tid = tid();
	e->op_id = o->id;
	e->ts_ns = bpf_ktime_get_ns();
	e->duration_ns = e->ts_ns - o->populate_t0;
	e->nid = nid;
	e->ret = ret;
	e->start_pfn = pfn;
	e->nr_pages = nr_pages;
	e->flags = (altmap ? MEMHP_F_ALTMAP : 0) | MEMHP_F_POPULATE_DIRECT;
	bpf_ringbuf_submit(e, 0);
	o->populate_t0 = 0;
	return 0;
}

/* Each memmap block of the add, as the kernel placed it: the aggregator
 * takes the add's memmap classes (altmap, page allocator, base-page
 * fallback, local or remote) from these sums, and checks the page events'
 * count against them. A failed allocation has actual_nid -1; failures reach
 * user space per add (memmap_failed, "memmap_events.failed_blocks"). */
SEC("tp_btf/mhp_memmap_alloc")
int BPF_PROG(memmap_alloc, unsigned long pfn, unsigned long nr_pages, int nid, int actual_nid, int source)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o)
		return 0;
	o->flags |= MEMHP_F_MEMMAP_EVENTS;
	if (source == MHP_MEMMAP_ALTMAP) {
		if (pfn)
			o->memmap_altmap_pages += nr_pages;
		else
			o->memmap_failed++;
		return 0;
	}
	if (actual_nid < 0) {
		o->memmap_failed++;
		return 0;
	}
	o->memmap_buddy_pages += nr_pages;
	if (actual_nid != nid)
		o->memmap_remote_pages += nr_pages;
	if (source == MHP_MEMMAP_BASE_PAGES)
		o->memmap_base_pages += nr_pages;
	return 0;
}

/* ---- page allocator (as in hotplug.bpf.c) ---------------------------------- */

extern const void vmemmap_base __ksym;

static __always_inline __u64 vmemmap_to_pfn(unsigned long addr)
{
	unsigned long base = 0;
	bpf_probe_read_kernel(&base, sizeof(base), &vmemmap_base);
	return (addr - base) / bpf_core_type_size(struct page);
}

static __always_inline int page_event(__u32 type, unsigned long long *ctx, unsigned int order, gfp_t gfp)
{
	if (!inflight)
		return 0;
	unsigned long page_addr;
	struct op *o = op_of_page_event(ctx, &page_addr);
	if (!o)
		return 0;
	/* An add's frees only count (see hotplug.bpf.c): summed, no event. */
	if (o->type == MEMHP_EV_ADD && type == MEMHP_EV_PAGE_FREE) {
		o->summed_freed_pages += 1ull << (order & 31);
		return 0;
	}
	struct memhp_event *e = reserve();
	if (!e)
		return 0;
	e->type = type;
	e->tid = tid();
	e->op_id = o->id;
	e->op_type = o->type;
	e->ts_ns = bpf_ktime_get_ns();
	e->pfn = vmemmap_to_pfn(page_addr);
	e->order = order;
	e->gfp = gfp;
	e->nid = o->nid;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(page_alloc, struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype)
{
	return page_event(MEMHP_EV_PAGE_ALLOC, ctx, order, gfp_flags);
}

SEC("tp_btf/mm_page_free")
int BPF_PROG(page_free, struct page *page, unsigned int order)
{
	return page_event(MEMHP_EV_PAGE_FREE, ctx, order, 0);
}

/* ---- online / offline, per memory block ------------------------------------ */

static __always_inline void block_begin(void *ctx, __u32 type, struct zone *zone, unsigned long start_pfn,
					unsigned long nr_pages, unsigned long nr_vmemmap_pages)
{
	struct op *o = op_start(type, ctx);
	if (!o)
		return;
	o->start_pfn = start_pfn;
	o->nr_pages = nr_pages;
	o->vmemmap_pages = nr_vmemmap_pages;
	bpf_probe_read_kernel_str(o->zone, sizeof(o->zone), BPF_CORE_READ(zone, name));
	o->nid = BPF_CORE_READ(zone, zone_pgdat, node_id);
}

static __always_inline void block_end(__u32 type, int ret)
{
	struct op *o = op_current(type);
	if (o)
		op_finish(o, ret);
}

SEC("tp_btf/mhp_online_begin")
int BPF_PROG(online_begin, struct zone *zone, unsigned long start_pfn, unsigned long nr_pages,
	     unsigned long nr_vmemmap_pages)
{
	block_begin(ctx, MEMHP_EV_ONLINE, zone, start_pfn, nr_pages, nr_vmemmap_pages);
	return 0;
}

SEC("tp_btf/mhp_online_end")
int BPF_PROG(online_end, struct zone *zone, unsigned long start_pfn, unsigned long nr_pages,
	     unsigned long nr_vmemmap_pages, int ret)
{
	block_end(MEMHP_EV_ONLINE, ret);
	return 0;
}

SEC("tp_btf/mhp_offline_begin")
int BPF_PROG(offline_begin, struct zone *zone, unsigned long start_pfn, unsigned long nr_pages,
	     unsigned long nr_vmemmap_pages)
{
	block_begin(ctx, MEMHP_EV_OFFLINE, zone, start_pfn, nr_pages, nr_vmemmap_pages);
	return 0;
}

SEC("tp_btf/mhp_offline_end")
int BPF_PROG(offline_end, struct zone *zone, unsigned long start_pfn, unsigned long nr_pages,
	     unsigned long nr_vmemmap_pages, int ret)
{
	block_end(MEMHP_EV_OFFLINE, ret);
	return 0;
}

/* ---- remove -------------------------------------------------------------- */

SEC("tp_btf/mhp_remove_memory_begin")
int BPF_PROG(remove_begin, u64 start, u64 size)
{
	struct op *o = op_start(MEMHP_EV_REMOVE, ctx);
	if (o) {
		o->start_pfn = start >> 12;
		o->nr_pages = size >> 12;
		o->kernel_memmap_before = kernel_memmap_pages();
	}
	return 0;
}

SEC("tp_btf/mhp_remove_memory_end")
int BPF_PROG(remove_end, int nid, u64 start, u64 size)
{
	struct op *o = op_current(MEMHP_EV_REMOVE);
	if (!o)
		return 0;
	o->nid = nid;
	struct trace_event_raw_mhp_remove_memory_end___v72 *v72 = 0;
	memmap_pages_of(o, arg_value(ctx, 3), bpf_core_field_exists(v72->memmap_pages));
	op_finish(o, (int)ctx[4]);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
