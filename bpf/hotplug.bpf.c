// SPDX-License-Identifier: GPL-2.0
/* memhp's hot-plug probes.
 *
 * One object, because the families share per-task state: an operation
 * (add, online, offline, remove) starts at its outermost function, inner
 * functions fill in what only they see (the altmap, the pfn range, the zone),
 * the page allocator's tracepoints attribute pages to the operation in flight
 * on the same task, and the outermost function's exit sends one event.
 *
 * Kernel differences are handled at attach time by the loader: programs whose
 * target cannot be attached (vmemmap_populate is __meminit and notrace up to
 * 6.10) are left unattached and the rest keeps working; populate is then
 * inferred from __add_pages, which covers sparse_add_section() and with it
 * vmemmap population.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "memhp_event.h"

#define PAGE_SHIFT 12
#define MAX_OPS 1024

struct op {
	__u64 id;
	__u64 t0;
	__u64 populate_t0;        /* __add_pages entry (inferred populate) */
	__u64 populate_direct_t0; /* vmemmap_populate entry */
	__u32 type;
	__s32 nid;
	__u64 start_pfn;
	__u64 nr_pages;
	__u64 mhp_flags;
	__u64 altmap_pages;
	__u64 vmemmap_pages;
	__u32 flags;
	__u32 caller;
	__s32 inner_ret; /* offline_pages()' return: the reason an offline failed */
	__u32 _pad;
	char zone[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OPS);
	__type(key, __u32); /* tid */
	__type(value, struct op);
} ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Operations in flight, system-wide: the page-allocator hooks return at
 * once when this is zero. */
volatile __u32 inflight = 0;
__u64 next_op_id = 0;
__u64 dropped_events = 0;
/* Set by the loader once fexit/vmemmap_populate is attached: populate events
 * then come from there and __add_pages no longer infers them. */
volatile __u32 populate_direct = 0;

static __always_inline __u32 tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

static __always_inline struct op *op_start(__u32 type)
{
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (o)
		return o; /* nested: the outer function owns the op */
	struct op fresh = {};
	fresh.id = __sync_fetch_and_add(&next_op_id, 1) + 1;
	fresh.t0 = bpf_ktime_get_ns();
	fresh.type = type;
	fresh.nid = -1;
	if (bpf_map_update_elem(&ops, &t, &fresh, BPF_NOEXIST))
		return 0;
	__sync_fetch_and_add(&inflight, 1);
	return bpf_map_lookup_elem(&ops, &t);
}

static __always_inline struct op *op_current(__u32 type)
{
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (!o || o->type != type)
		return 0;
	return o;
}

static __always_inline void op_drop(void)
{
	__u32 t = tid();
	if (bpf_map_delete_elem(&ops, &t) == 0)
		__sync_fetch_and_sub(&inflight, 1);
}

static __always_inline struct memhp_event *reserve(void)
{
	struct memhp_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped_events, 1);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	return e;
}

/* Sends the op's event and forgets the op. */
static __always_inline void op_finish(__u32 type, int ret)
{
	struct op *o = op_current(type);
	if (!o)
		return;
	struct memhp_event *e = reserve();
	if (e) {
		e->type = type;
		e->tid = tid();
		e->op_id = o->id;
		e->ts_ns = bpf_ktime_get_ns();
		e->duration_ns = e->ts_ns - o->t0;
		e->nid = o->nid;
		e->ret = ret ? ret : o->inner_ret;
		e->start_pfn = o->start_pfn;
		e->nr_pages = o->nr_pages;
		e->mhp_flags = o->mhp_flags;
		e->altmap_pages = o->altmap_pages;
		e->vmemmap_pages = o->vmemmap_pages;
		e->flags = o->flags;
		e->caller = o->caller;
		__builtin_memcpy(e->zone, o->zone, sizeof(e->zone));
		bpf_ringbuf_submit(e, 0);
	}
	op_drop();
}

static __always_inline void zone_info(struct op *o, struct zone *zone)
{
	const char *name = BPF_CORE_READ(zone, name);
	bpf_probe_read_kernel_str(o->zone, sizeof(o->zone), name);
	o->nid = BPF_CORE_READ(zone, zone_pgdat, node_id);
}

/* ---- add ---------------------------------------------------------------- */

SEC("fentry/add_memory_driver_managed")
int BPF_PROG(add_driver_managed_entry)
{
	struct op *o = op_start(MEMHP_EV_ADD);
	if (o)
		o->caller = MEMHP_CALLER_DRIVER_MANAGED;
	return 0;
}

SEC("fexit/add_memory_driver_managed")
int BPF_PROG(add_driver_managed_exit)
{
	/* Normally add_memory_resource's exit has sent and dropped the op; if
	 * the driver-managed add failed before getting there, forget it. */
	if (op_current(MEMHP_EV_ADD))
		op_drop();
	return 0;
}

SEC("fentry/add_memory_resource")
int BPF_PROG(add_entry, int nid, struct resource *res, mhp_t mhp_flags)
{
	struct op *o = op_start(MEMHP_EV_ADD);
	if (!o)
		return 0;
	__u64 start = BPF_CORE_READ(res, start), end = BPF_CORE_READ(res, end);
	o->nid = nid;
	o->start_pfn = start >> PAGE_SHIFT;
	o->nr_pages = (end - start + 1) >> PAGE_SHIFT;
	o->mhp_flags = mhp_flags;
	return 0;
}

SEC("fexit/add_memory_resource")
int BPF_PROG(add_exit, int nid, struct resource *res, mhp_t mhp_flags, int ret)
{
	op_finish(MEMHP_EV_ADD, ret);
	return 0;
}

SEC("fexit/arch_add_memory")
int BPF_PROG(arch_add_exit, int nid, u64 start, u64 size, struct mhp_params *params, int ret)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o)
		return 0;
	/* ACPI adds pass a memory group id as add_memory_resource()'s nid
	 * (MHP_NID_IS_MGID); arch_add_memory() gets the real node. */
	o->nid = nid;
	struct vmem_altmap *altmap = BPF_CORE_READ(params, altmap);
	if (altmap) {
		/* From 6.6 on, one arch_add_memory() per block, each with its own altmap. */
		o->altmap_pages += BPF_CORE_READ(altmap, alloc);
		o->flags |= MEMHP_F_ALTMAP;
	}
	return 0;
}

/* ---- vmemmap population --------------------------------------------------- */

static __always_inline void send_populate(struct op *o, __u64 t0, int nid, __u64 pfn, __u64 nr, int ret,
					  __u32 flags)
{
	struct memhp_event *e = reserve();
	if (!e)
		return;
	e->type = MEMHP_EV_POPULATE;
	e->tid = tid();
	e->op_id = o->id;
	e->ts_ns = bpf_ktime_get_ns();
	e->duration_ns = e->ts_ns - t0;
	e->nid = nid;
	e->ret = ret;
	e->start_pfn = pfn;
	e->nr_pages = nr;
	e->flags = flags;
	bpf_ringbuf_submit(e, 0);
}

SEC("fentry/__add_pages")
int BPF_PROG(add_pages_entry)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (o)
		o->populate_t0 = bpf_ktime_get_ns();
	return 0;
}

SEC("fexit/__add_pages")
int BPF_PROG(add_pages_exit, int nid, unsigned long pfn, unsigned long nr_pages, struct mhp_params *params, int ret)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o || populate_direct)
		return 0;
	__u32 flags = BPF_CORE_READ(params, altmap) ? MEMHP_F_ALTMAP : 0;
	send_populate(o, o->populate_t0, nid, pfn, nr_pages, ret, flags);
	return 0;
}

SEC("fentry/vmemmap_populate")
int BPF_PROG(populate_entry)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (o)
		o->populate_direct_t0 = bpf_ktime_get_ns();
	return 0;
}

extern const void vmemmap_base __ksym;

static __always_inline __u64 vmemmap_to_pfn(unsigned long addr)
{
	unsigned long base = 0;
	bpf_probe_read_kernel(&base, sizeof(base), &vmemmap_base);
	return (addr - base) / bpf_core_type_size(struct page);
}

SEC("fexit/vmemmap_populate")
int BPF_PROG(populate_exit, unsigned long start, unsigned long end, int node, struct vmem_altmap *altmap, int ret)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o)
		return 0;
	send_populate(o, o->populate_direct_t0, node, vmemmap_to_pfn(start),
		      (end - start) / bpf_core_type_size(struct page), ret,
		      (altmap ? MEMHP_F_ALTMAP : 0) | MEMHP_F_POPULATE_DIRECT);
	return 0;
}

/* ---- page allocator ------------------------------------------------------ */

static __always_inline int page_event(__u32 type, unsigned long long *ctx, unsigned int order, gfp_t gfp)
{
	if (!inflight)
		return 0;
	/* mm_page_alloc also fires for an allocation that failed (page NULL),
	 * e.g. vmemmap's order-9 attempt before its base-page fallback: nothing
	 * was taken. */
	unsigned long page_addr = 0;
	bpf_probe_read_kernel(&page_addr, sizeof(page_addr), &ctx[0]);
	if (!page_addr)
		return 0;
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (!o)
		return 0;
	struct memhp_event *e = reserve();
	if (!e)
		return 0;
	e->type = type;
	e->tid = t;
	e->op_id = o->id;
	e->op_type = o->type;
	e->ts_ns = bpf_ktime_get_ns();
	/* The tracepoint's page pointer, as a plain number (read above): the
	 * verifier allows no arithmetic on the trusted pointer itself. */
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

/* ---- online / offline ---------------------------------------------------- */

SEC("fentry/memory_subsys_online")
int BPF_PROG(online_entry)
{
	op_start(MEMHP_EV_ONLINE);
	return 0;
}

SEC("fexit/memory_subsys_online")
int BPF_PROG(online_exit, struct device *dev, int ret)
{
	op_finish(MEMHP_EV_ONLINE, ret);
	return 0;
}

SEC("fentry/mhp_init_memmap_on_memory")
int BPF_PROG(init_memmap_entry, unsigned long pfn, unsigned long nr_pages)
{
	struct op *o = op_current(MEMHP_EV_ONLINE);
	if (o) {
		o->start_pfn = pfn; /* the block's start: the altmap pages come first */
		o->vmemmap_pages += nr_pages;
		o->nr_pages += nr_pages;
	}
	return 0;
}

SEC("fentry/online_pages")
int BPF_PROG(online_pages_entry, unsigned long pfn, unsigned long nr_pages, struct zone *zone)
{
	struct op *o = op_current(MEMHP_EV_ONLINE);
	if (!o)
		return 0;
	if (!o->start_pfn)
		o->start_pfn = pfn;
	o->nr_pages += nr_pages;
	zone_info(o, zone);
	return 0;
}

SEC("fentry/memory_subsys_offline")
int BPF_PROG(offline_entry)
{
	op_start(MEMHP_EV_OFFLINE);
	return 0;
}

SEC("fexit/memory_subsys_offline")
int BPF_PROG(offline_exit, struct device *dev, int ret)
{
	op_finish(MEMHP_EV_OFFLINE, ret);
	return 0;
}

SEC("fentry/offline_pages")
int BPF_PROG(offline_pages_entry, unsigned long start_pfn, unsigned long nr_pages, struct zone *zone)
{
	struct op *o = op_current(MEMHP_EV_OFFLINE);
	if (!o)
		return 0;
	if (!o->start_pfn || start_pfn < o->start_pfn)
		o->start_pfn = start_pfn;
	o->nr_pages += nr_pages;
	zone_info(o, zone);
	return 0;
}

SEC("fexit/offline_pages")
int BPF_PROG(offline_pages_exit, unsigned long start_pfn, unsigned long nr_pages, struct zone *zone,
	     struct memory_group *group, int ret)
{
	struct op *o = op_current(MEMHP_EV_OFFLINE);
	if (o && ret)
		o->inner_ret = ret;
	return 0;
}

SEC("fentry/mhp_deinit_memmap_on_memory")
int BPF_PROG(deinit_memmap_entry, unsigned long pfn, unsigned long nr_pages)
{
	struct op *o = op_current(MEMHP_EV_OFFLINE);
	if (o) {
		if (!o->start_pfn || pfn < o->start_pfn)
			o->start_pfn = pfn;
		o->vmemmap_pages += nr_pages;
		o->nr_pages += nr_pages;
	}
	return 0;
}

/* ---- remove -------------------------------------------------------------- */

SEC("fentry/try_remove_memory")
int BPF_PROG(remove_entry, u64 start, u64 size)
{
	struct op *o = op_start(MEMHP_EV_REMOVE);
	if (o) {
		o->start_pfn = start >> PAGE_SHIFT;
		o->nr_pages = size >> PAGE_SHIFT;
	}
	return 0;
}

SEC("fexit/try_remove_memory")
int BPF_PROG(remove_exit, u64 start, u64 size, int ret)
{
	op_finish(MEMHP_EV_REMOVE, ret);
	return 0;
}

SEC("fentry/arch_remove_memory")
int BPF_PROG(arch_remove_entry, u64 start, u64 size, struct vmem_altmap *altmap)
{
	struct op *o = op_current(MEMHP_EV_REMOVE);
	if (o && altmap) {
		o->altmap_pages += BPF_CORE_READ(altmap, alloc);
		o->flags |= MEMHP_F_ALTMAP;
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
