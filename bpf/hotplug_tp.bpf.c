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
 * The per-task operation state, the ring buffer, the counters and the
 * event fill are shared with hotplug.bpf.c (hotplug_ops.bpf.h). The two
 * versions of the events (kernel-patches/6.1 and 7.2) are told apart with
 * CO-RE on the events' entry structs, in core_fixes.bpf.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "core_fixes.bpf.h"
#include "hotplug_ops.bpf.h"
#include "memhp_event.h"

/* mm/vmstat.c's static nr_memmap_pages (Linux 6.11+, core_fixes.bpf.h),
 * resolved by libbpf from kallsyms; weak, so its address is 0 on 6.1. */
extern const void nr_memmap_pages __ksym __weak;

/* Its address for kernel_memmap_at() and op_finish(). */
static __always_inline __u64 nr_memmap_pages_at(void)
{
	return (__u64)(unsigned long)&nr_memmap_pages;
}

/* ---- add ---------------------------------------------------------------- */

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
	struct op *o = op_enter(MEMHP_EV_ADD, OP_SAME_KEEPS, ctx);
	if (!o)
		return 0;
	o->nid = nid; /* a memory group id for ACPI DIMMs: add_end has the node */
	o->start_pfn = start >> 12;
	o->nr_pages = size >> 12;
	o->mhp_flags = (__u32)mhp_flags;
	o->kernel_memmap_before = kernel_memmap_at(nr_memmap_pages_at());
	if (mhp_add_begin_has_driver_managed() && (ctx[4] & 0xff))
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
	memmap_pages_of(o, tp_arg(ctx, 4), mhp_add_end_passes_count());
	op_finish(o, (int)ctx[5], nr_memmap_pages_at());
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
	const __u64 altmap = tp_arg(ctx, 3);
	const int ret = (int)ctx[4];
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o || !o->populate_t0)
		return 0;
	if (populate_event(o, o->populate_t0, nid, pfn, nr_pages, ret,
			   (altmap ? MEMHP_F_ALTMAP : 0) | MEMHP_F_POPULATE_DIRECT))
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

static __always_inline int page_event(__u32 type, unsigned long long *ctx, unsigned int order, gfp_t gfp)
{
	if (!inflight)
		return 0;
	unsigned long page_addr;
	struct op *o = op_of_page_event(ctx, &page_addr);
	if (!o)
		return 0;
	/* No call-site classes here: an add sums only its frees. */
	if (op_sums_page(o, type, MEMHP_SITE_UNKNOWN, order))
		return 0;
	struct memhp_event *e = page_event_reserve(type, o, vmemmap_to_pfn(&vmemmap_base, page_addr), order, gfp);
	if (e)
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
	struct op *o = op_enter(type, OP_SAME_KEEPS, ctx);
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
		op_finish(o, ret, nr_memmap_pages_at());
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
	struct op *o = op_enter(MEMHP_EV_REMOVE, OP_SAME_KEEPS, ctx);
	if (o) {
		o->start_pfn = start >> 12;
		o->nr_pages = size >> 12;
		o->kernel_memmap_before = kernel_memmap_at(nr_memmap_pages_at());
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
	memmap_pages_of(o, tp_arg(ctx, 3), mhp_remove_end_passes_count());
	op_finish(o, (int)ctx[4], nr_memmap_pages_at());
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
