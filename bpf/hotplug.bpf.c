// SPDX-License-Identifier: GPL-2.0-only
/* memhp's hot-plug probes.
 *
 * One object, because the families share per-task state: an operation
 * (add, online, offline, remove) starts at its outermost function, inner
 * functions fill in what only they see (the altmap, the pfn range, the zone),
 * the page allocator's tracepoints attribute pages to the operation in flight
 * on the same task, and the outermost function's exit sends one event.
 *
 * Every hook is one static handler with two entry points, as in bcc's
 * libbpf-tools: fentry/fexit (or tp_btf) and kprobe/kretprobe (or raw_tp).
 * The loader decides per hook from what it found out about the kernel
 * (collector/src/attach_plan.cpp) and switches the loser off with
 * bpf_program__set_autoload() before load. A kretprobe cannot read the
 * function's arguments, so where an exit handler needs them a kprobe twin
 * saves them in `saved_args`, keyed by task and function.
 *
 * Programs whose target cannot be attached (vmemmap_populate is __meminit and
 * notrace up to 6.10) are left out and the rest keeps working; populate is
 * then inferred from __add_pages, which covers sparse_add_section() and with
 * it vmemmap population. Kernel differences in the structures read are
 * handled with CO-RE checks in core_fixes.bpf.h, each naming the kernel
 * commit; the operation state, the ring buffer, the counters and the event
 * fill are shared with hotplug_tp.bpf.c (hotplug_ops.bpf.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "core_fixes.bpf.h"
#include "hotplug.h"
#include "hotplug_ops.bpf.h"
#include "memhp_event.h"

#define PAGE_SHIFT 12
#define MAX_FRAMES 24

/* Entry arguments for kretprobe handlers. */
enum saved_fn {
	SAVED_ARCH_ADD = 1,
	SAVED_ADD_PAGES = 2,
	SAVED_POPULATE = 3,
};

struct saved_key {
	__u32 tid;
	__u32 fn; /* enum saved_fn */
};

struct saved_args {
	__u64 arg[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OPS);
	__type(key, struct saved_key);
	__type(value, struct saved_args);
} saved_args SEC(".maps");

/* Set by the loader from /proc/kallsyms after load and before attach (in
 * .bss, not .rodata, so reading kallsyms can overlap the verifier). */
volatile __u64 vmemmap_base_addr = 0; /* &vmemmap_base (KASLR moves the vmemmap) */
/* &nr_memmap_pages (mm/vmstat.c, Linux 6.11+, a static atomic_long_t), or 0
 * (core_fixes.bpf.h kernel_memmap_at). */
volatile __u64 nr_memmap_pages_addr = 0;

/* Call sites, as kernel function ranges. */
#define MAX_PT_CALLERS 5
/* vmemmap_alloc_block(): every page-allocator page of the vmemmap. */
volatile struct memhp_code_range site_block = {};
/* Its callers that want page tables, not struct pages:
 * vmemmap_alloc_block_zero() and vmemmap_{pgd,p4d,pud,pmd}_populate(). */
volatile struct memhp_code_range site_pt_callers[MAX_PT_CALLERS] = {};
/* init_memory_mapping(): the direct map of the new range (x86). */
volatile struct memhp_code_range site_directmap = {};

__u64 sub_overflow = 0; /* sub-phase entries not timed (stack full) or exits that did not match */
/* Set by the loader once the vmemmap_populate exit is attached: populate
 * events then come from there and __add_pages no longer infers them. */
volatile __u32 populate_direct = 0;
/* Tests only (ProbeOptions::test_miss_online_exits): the next this-many
 * online exits are ignored, as if their kretprobe had been missed, so that a
 * VM test can watch the stale op be found and forgotten. 0 in normal use. */
volatile __u32 test_miss_online_exits = 0;

/* An op begins at its outermost function. Inner functions of an add
 * (add_memory_resource under add_memory_driver_managed) join the op their
 * outer function started; an online, offline or remove begun while one of
 * its type is in flight ends the stale one (op_enter, enum op_same_type);
 * an online inside an add (auto-online) is nested in it. */
static __always_inline struct op *op_start(__u32 type, void *ctx)
{
	struct op *o = op_enter(type, type == MEMHP_EV_ADD ? OP_SAME_JOINS : OP_SAME_ENDS_STALE, ctx);
	if (o && o->sub_depth == 0) { /* a fresh op: its own function is the bottom of the stack */
		o->sub_depth = 1;
		o->sub_stack[0] = MEMHP_SUB_OWN;
		o->sub_mark = o->t0;
	}
	return o;
}

/* A timed function inside the op in flight on this task (any type) began. */
static __always_inline struct op *sub_enter(__u32 slot)
{
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (!o || o->sub_depth == 0)
		return 0;
	if (o->sub_depth >= SUB_DEPTH) {
		__sync_fetch_and_add(&sub_overflow, 1);
		return 0;
	}
	sub_charge(o, bpf_ktime_get_ns());
	o->sub_stack[o->sub_depth & (SUB_DEPTH - 1)] = slot;
	o->sub_depth += 1;
	return o;
}

static __always_inline int sub_exit(__u32 slot)
{
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (!o || o->sub_depth < 2)
		return 0;
	if (o->sub_stack[(o->sub_depth - 1) & (SUB_DEPTH - 1)] != slot) {
		/* not the function on top: its entry was not timed, or an exit was missed */
		__sync_fetch_and_add(&sub_overflow, 1);
		o->sub_flags |= MEMHP_F_SUB_UNBALANCED;
		return 0;
	}
	sub_charge(o, bpf_ktime_get_ns());
	o->sub_depth -= 1;
	return 0;
}

/* The exit of the op's outermost function: sends the op's record and ends
 * the op (op_finish). */
static __always_inline void op_exit(__u32 type, int ret)
{
	struct op *o = op_current(type);
	if (o)
		op_finish(o, ret, nr_memmap_pages_addr);
}

static __always_inline void save_args(__u32 fn, __u64 a0, __u64 a1, __u64 a2, __u64 a3)
{
	struct saved_key k = {.tid = tid(), .fn = fn};
	struct saved_args v = {.arg = {a0, a1, a2, a3}};
	bpf_map_update_elem(&saved_args, &k, &v, BPF_ANY);
}

/* The arguments the kprobe twin saved, once; false when there are none. */
static __always_inline bool take_args(__u32 fn, struct saved_args *out)
{
	struct saved_key k = {.tid = tid(), .fn = fn};
	struct saved_args *v = bpf_map_lookup_elem(&saved_args, &k);
	if (!v)
		return false;
	*out = *v;
	bpf_map_delete_elem(&saved_args, &k);
	return true;
}

static __always_inline void zone_info(struct op *o, struct zone *zone)
{
	const char *name = BPF_CORE_READ(zone, name);
	bpf_probe_read_kernel_str(o->zone, sizeof(o->zone), name);
	o->nid = BPF_CORE_READ(zone, zone_pgdat, node_id);
}

/* ---- the node of a page (block_vmemmap_pages and page_flags, the
 * structures that differ between kernels, are in core_fixes.bpf.h) -------- */

/* page_to_nid() for x86-64 SPARSEMEM_VMEMMAP: no section bits in
 * page->flags, so the node sits in its top NODES_SHIFT bits
 * (include/linux/page-flags-layout.h). NODES_SHIFT is not in BTF, but
 * struct zonelist holds MAX_NUMNODES * MAX_NR_ZONES + 1 zonerefs. */
static __always_inline int page_nid(struct page *page)
{
	__u64 zonerefs = bpf_core_type_size(struct zonelist) / bpf_core_type_size(struct zoneref);
	__u64 zones = bpf_core_enum_value(enum zone_type, __MAX_NR_ZONES);
	if (!zones || zonerefs < 2)
		return -1;
	__u64 max_nodes = (zonerefs - 1) / zones;
	int shift = 0;
	for (int i = 0; i < 16; i++) {
		if ((1ull << i) >= max_nodes) {
			shift = i;
			break;
		}
	}
	if (!shift)
		return 0; /* one node: no node bits */
	return (int)(page_flags(page) >> (64 - shift));
}

/* ---- add ---------------------------------------------------------------- */

static __always_inline int handle_driver_managed_entry(void *ctx)
{
	struct op *o = op_start(MEMHP_EV_ADD, ctx);
	if (o)
		o->caller = MEMHP_CALLER_DRIVER_MANAGED;
	return 0;
}

static __always_inline int handle_driver_managed_exit(void)
{
	/* Normally add_memory_resource's exit has sent and dropped the op; if
	 * the driver-managed add failed before getting there, forget it. */
	if (op_current(MEMHP_EV_ADD))
		op_end(bpf_ktime_get_ns());
	return 0;
}

SEC("fentry/add_memory_driver_managed")
int BPF_PROG(add_driver_managed_fentry)
{
	return handle_driver_managed_entry(ctx);
}

SEC("kprobe/add_memory_driver_managed")
int BPF_KPROBE(add_driver_managed_kprobe)
{
	return handle_driver_managed_entry(ctx);
}

SEC("fexit/add_memory_driver_managed")
int BPF_PROG(add_driver_managed_fexit)
{
	return handle_driver_managed_exit();
}

SEC("kretprobe/add_memory_driver_managed")
int BPF_KRETPROBE(add_driver_managed_kretprobe)
{
	return handle_driver_managed_exit();
}

static __always_inline int handle_add_entry(void *ctx, int nid, struct resource *res, mhp_t mhp_flags)
{
	struct op *o = op_start(MEMHP_EV_ADD, ctx);
	if (!o)
		return 0;
	__u64 start = BPF_CORE_READ(res, start), end = BPF_CORE_READ(res, end);
	o->nid = nid;
	o->start_pfn = start >> PAGE_SHIFT;
	o->nr_pages = (end - start + 1) >> PAGE_SHIFT;
	o->mhp_flags = mhp_flags;
	o->kernel_memmap_before = kernel_memmap_at(nr_memmap_pages_addr);
	return 0;
}

SEC("fentry/add_memory_resource")
int BPF_PROG(add_fentry, int nid, struct resource *res, mhp_t mhp_flags)
{
	return handle_add_entry(ctx, nid, res, mhp_flags);
}

SEC("kprobe/add_memory_resource")
int BPF_KPROBE(add_kprobe, int nid, struct resource *res, mhp_t mhp_flags)
{
	return handle_add_entry(ctx, nid, res, mhp_flags);
}

SEC("fexit/add_memory_resource")
int BPF_PROG(add_fexit, int nid, struct resource *res, mhp_t mhp_flags, int ret)
{
	op_exit(MEMHP_EV_ADD, ret);
	return 0;
}

SEC("kretprobe/add_memory_resource")
int BPF_KRETPROBE(add_kretprobe, int ret)
{
	op_exit(MEMHP_EV_ADD, ret);
	return 0;
}

static __always_inline int handle_arch_add_exit(int nid, struct mhp_params *params)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o)
		return 0;
	/* ACPI adds pass a memory group id as add_memory_resource()'s nid
	 * (MHP_NID_IS_MGID); arch_add_memory() gets the real node. */
	o->nid = nid;
	struct vmem_altmap *altmap = BPF_CORE_READ(params, altmap);
	if (altmap) {
		/* One arch_add_memory() per block, each with its own altmap, since
		 * 6b8f0798b85a ("mm/memory_hotplug: split memmap_on_memory
		 * requests across memblocks", 6.8): summed. */
		o->altmap_pages += BPF_CORE_READ(altmap, alloc);
		o->flags |= MEMHP_F_ALTMAP;
	}
	return 0;
}

SEC("fexit/arch_add_memory")
int BPF_PROG(arch_add_fexit, int nid, u64 start, u64 size, struct mhp_params *params, int ret)
{
	return handle_arch_add_exit(nid, params);
}

SEC("kprobe/arch_add_memory")
int BPF_KPROBE(arch_add_kprobe_args, int nid, u64 start, u64 size, struct mhp_params *params)
{
	if (op_current(MEMHP_EV_ADD))
		save_args(SAVED_ARCH_ADD, nid, 0, 0, (__u64)params);
	return 0;
}

SEC("kretprobe/arch_add_memory")
int BPF_KRETPROBE(arch_add_kretprobe)
{
	struct saved_args a;
	if (!take_args(SAVED_ARCH_ADD, &a))
		return 0;
	return handle_arch_add_exit((int)a.arg[0], (struct mhp_params *)a.arg[3]);
}

/* ---- vmemmap population --------------------------------------------------- */

static __always_inline int handle_add_pages_entry(void)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (o)
		o->populate_t0 = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int handle_add_pages_exit(int nid, unsigned long pfn, unsigned long nr_pages,
						 struct mhp_params *params, int ret)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o || populate_direct)
		return 0;
	__u32 flags = BPF_CORE_READ(params, altmap) ? MEMHP_F_ALTMAP : 0;
	populate_event(o, o->populate_t0, nid, pfn, nr_pages, ret, flags);
	return 0;
}

SEC("fentry/__add_pages")
int BPF_PROG(add_pages_fentry)
{
	return handle_add_pages_entry();
}

SEC("kprobe/__add_pages")
int BPF_KPROBE(add_pages_kprobe)
{
	return handle_add_pages_entry();
}

SEC("fexit/__add_pages")
int BPF_PROG(add_pages_fexit, int nid, unsigned long pfn, unsigned long nr_pages, struct mhp_params *params, int ret)
{
	return handle_add_pages_exit(nid, pfn, nr_pages, params, ret);
}

SEC("kprobe/__add_pages")
int BPF_KPROBE(add_pages_kprobe_args, int nid, unsigned long pfn, unsigned long nr_pages, struct mhp_params *params)
{
	if (op_current(MEMHP_EV_ADD))
		save_args(SAVED_ADD_PAGES, nid, pfn, nr_pages, (__u64)params);
	return 0;
}

SEC("kretprobe/__add_pages")
int BPF_KRETPROBE(add_pages_kretprobe, int ret)
{
	struct saved_args a;
	if (!take_args(SAVED_ADD_PAGES, &a))
		return 0;
	return handle_add_pages_exit((int)a.arg[0], a.arg[1], a.arg[2], (struct mhp_params *)a.arg[3], ret);
}

/* The pfn of the struct page at `addr`. */
static __always_inline __u64 page_pfn(unsigned long addr)
{
	return vmemmap_to_pfn((const void *)vmemmap_base_addr, addr);
}

static __always_inline int handle_populate_entry(void)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (o)
		o->populate_direct_t0 = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int handle_populate_exit(unsigned long start, unsigned long end, int node,
						struct vmem_altmap *altmap, int ret)
{
	struct op *o = op_current(MEMHP_EV_ADD);
	if (!o)
		return 0;
	populate_event(o, o->populate_direct_t0, node, page_pfn(start),
		       (end - start) / bpf_core_type_size(struct page), ret,
		       (altmap ? MEMHP_F_ALTMAP : 0) | MEMHP_F_POPULATE_DIRECT);
	return 0;
}

SEC("fentry/vmemmap_populate")
int BPF_PROG(populate_fentry)
{
	return handle_populate_entry();
}

SEC("kprobe/vmemmap_populate")
int BPF_KPROBE(populate_kprobe)
{
	return handle_populate_entry();
}

SEC("fexit/vmemmap_populate")
int BPF_PROG(populate_fexit, unsigned long start, unsigned long end, int node, struct vmem_altmap *altmap, int ret)
{
	return handle_populate_exit(start, end, node, altmap, ret);
}

SEC("kprobe/vmemmap_populate")
int BPF_KPROBE(populate_kprobe_args, unsigned long start, unsigned long end, int node, struct vmem_altmap *altmap)
{
	if (op_current(MEMHP_EV_ADD))
		save_args(SAVED_POPULATE, start, end, node, (__u64)altmap);
	return 0;
}

SEC("kretprobe/vmemmap_populate")
int BPF_KRETPROBE(populate_kretprobe, int ret)
{
	struct saved_args a;
	if (!take_args(SAVED_POPULATE, &a))
		return 0;
	return handle_populate_exit(a.arg[0], a.arg[1], (int)a.arg[2], (struct vmem_altmap *)a.arg[3], ret);
}

/* ---- page allocator ------------------------------------------------------ */

/* Who asked for the pages: the kernel stack against the code ranges above.
 * Anything under init_memory_mapping() is a direct-map page table. Under
 * vmemmap_alloc_block() the caller decides: the page-table populators want
 * page tables; everything else (vmemmap_alloc_block_buf(), or
 * vmemmap_populate() where 6.1 inlines it) wants struct pages. */
static __always_inline bool in_range(__u64 ip, __u64 start, __u64 end)
{
	/* ip is a return address: it can sit one past a final call. */
	return start && ip > start && ip <= end;
}

static __always_inline __u32 alloc_site(void *ctx)
{
	if (!site_block.start && !site_directmap.start)
		return MEMHP_SITE_UNKNOWN;
	__u64 ips[MAX_FRAMES] = {};
	long n = bpf_get_stack(ctx, ips, sizeof(ips), 0);
	if (n <= 0)
		return MEMHP_SITE_UNKNOWN;
	__u32 frames = n / sizeof(__u64);
	for (__u32 i = 0; i < MAX_FRAMES; i++) {
		if (i >= frames)
			break;
		__u64 ip = ips[i];
		if (in_range(ip, site_directmap.start, site_directmap.end))
			return MEMHP_SITE_PAGETABLE;
		if (!in_range(ip, site_block.start, site_block.end))
			continue;
		if (i + 1 >= frames || i + 1 >= MAX_FRAMES)
			return MEMHP_SITE_MEMMAP;
		__u64 caller = ips[i + 1];
		for (int j = 0; j < MAX_PT_CALLERS; j++)
			if (in_range(caller, site_pt_callers[j].start, site_pt_callers[j].end))
				return MEMHP_SITE_PAGETABLE;
		return MEMHP_SITE_MEMMAP;
	}
	return MEMHP_SITE_OTHER;
}

/* A subprogram of its own (not inlined), so the programs on these hot
 * tracepoints keep the prologue of a near-empty program for their fast
 * path. */
static __noinline int page_event_slow(__u32 type, unsigned long long *ctx, unsigned int order, gfp_t gfp)
{
	unsigned long page;
	struct op *o = op_of_page_event(ctx, &page);
	if (!o)
		return 0;
	/* Before the reservation: the stack walk needs no ring-buffer space held. */
	__u32 site = type == MEMHP_EV_PAGE_ALLOC ? alloc_site(ctx) : MEMHP_SITE_UNKNOWN;
	/* An add sums its frees and its pages of no memmap/page-table site. */
	if (op_sums_page(o, type, site, order))
		return 0;
	struct memhp_event *e = page_event_reserve(type, o, page_pfn(page), order, gfp);
	if (!e)
		return 0;
	e->page_nid = page_nid((struct page *)page);
	if (e->page_nid >= 0)
		e->flags |= MEMHP_F_PAGE_NID;
	e->site = site;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Every page allocation in the system comes here: one global read when no
 * hot-plug operation is in flight. */
static __always_inline int page_event(__u32 type, unsigned long long *ctx, unsigned int order, gfp_t gfp)
{
	if (!inflight)
		return 0;
	return page_event_slow(type, ctx, order, gfp);
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(page_alloc_tp_btf, struct page *page, unsigned int order, gfp_t gfp_flags)
{
	return page_event(MEMHP_EV_PAGE_ALLOC, ctx, order, gfp_flags);
}

SEC("raw_tp/mm_page_alloc")
int BPF_PROG(page_alloc_raw_tp, struct page *page, unsigned int order, gfp_t gfp_flags)
{
	return page_event(MEMHP_EV_PAGE_ALLOC, ctx, order, gfp_flags);
}

SEC("tp_btf/mm_page_free")
int BPF_PROG(page_free_tp_btf, struct page *page, unsigned int order)
{
	return page_event(MEMHP_EV_PAGE_FREE, ctx, order, 0);
}

SEC("raw_tp/mm_page_free")
int BPF_PROG(page_free_raw_tp, struct page *page, unsigned int order)
{
	return page_event(MEMHP_EV_PAGE_FREE, ctx, order, 0);
}

/* ---- online / offline ---------------------------------------------------- */

static __always_inline int handle_block_entry(void *ctx, __u32 type, struct device *dev)
{
	struct op *o = op_start(type, ctx);
	if (o)
		o->vmemmap_pages = block_vmemmap_pages(dev);
	return 0;
}

SEC("fentry/memory_subsys_online")
int BPF_PROG(online_fentry, struct device *dev)
{
	return handle_block_entry(ctx, MEMHP_EV_ONLINE, dev);
}

SEC("kprobe/memory_subsys_online")
int BPF_KPROBE(online_kprobe, struct device *dev)
{
	return handle_block_entry(ctx, MEMHP_EV_ONLINE, dev);
}

static __always_inline int handle_online_exit(int ret)
{
	if (test_miss_online_exits) {
		__sync_fetch_and_sub(&test_miss_online_exits, 1);
		return 0;
	}
	op_exit(MEMHP_EV_ONLINE, ret);
	return 0;
}

SEC("fexit/memory_subsys_online")
int BPF_PROG(online_fexit, struct device *dev, int ret)
{
	return handle_online_exit(ret);
}

SEC("kretprobe/memory_subsys_online")
int BPF_KRETPROBE(online_kretprobe, int ret)
{
	return handle_online_exit(ret);
}

/* Later kernels add a fourth argument (altmap->inaccessible); the first two
 * are the same everywhere. */
static __always_inline int handle_init_memmap(unsigned long pfn, unsigned long nr_pages)
{
	struct op *o = op_current(MEMHP_EV_ONLINE);
	if (o) {
		o->start_pfn = pfn; /* the block's start: the altmap pages come first */
		o->nr_pages += nr_pages;
	}
	return 0;
}

SEC("fentry/mhp_init_memmap_on_memory")
int BPF_PROG(init_memmap_fentry, unsigned long pfn, unsigned long nr_pages)
{
	return handle_init_memmap(pfn, nr_pages);
}

SEC("kprobe/mhp_init_memmap_on_memory")
int BPF_KPROBE(init_memmap_kprobe, unsigned long pfn, unsigned long nr_pages)
{
	return handle_init_memmap(pfn, nr_pages);
}

static __always_inline int handle_online_pages(unsigned long pfn, unsigned long nr_pages, struct zone *zone)
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

SEC("fentry/online_pages")
int BPF_PROG(online_pages_fentry, unsigned long pfn, unsigned long nr_pages, struct zone *zone)
{
	return handle_online_pages(pfn, nr_pages, zone);
}

SEC("kprobe/online_pages")
int BPF_KPROBE(online_pages_kprobe, unsigned long pfn, unsigned long nr_pages, struct zone *zone)
{
	return handle_online_pages(pfn, nr_pages, zone);
}

/* 5.10's online_pages(pfn, nr_pages, online_type, nid) picks the zone
 * itself (zone_for_pfn_range()); later kernels pass the zone in
 * (core_fixes.bpf.h lists the commit). The zone's
 * name follows from the online type the block was given (5.10's MMOP_*
 * values); a plain "online" leaves the choice to the kernel, unrecorded. */
static __always_inline int handle_online_pages_nid(unsigned long pfn, unsigned long nr_pages, int online_type,
						   int nid)
{
	struct op *o = op_current(MEMHP_EV_ONLINE);
	if (!o)
		return 0;
	if (!o->start_pfn)
		o->start_pfn = pfn;
	o->nr_pages += nr_pages;
	o->nid = nid;
	if (online_type == 3) /* MMOP_ONLINE_MOVABLE */
		__builtin_memcpy(o->zone, "Movable", 8);
	else if (online_type == 2) /* MMOP_ONLINE_KERNEL */
		__builtin_memcpy(o->zone, "Normal", 7);
	return 0;
}

SEC("fentry/online_pages")
int BPF_PROG(online_pages_nid_fentry, unsigned long pfn, unsigned long nr_pages, int online_type, int nid)
{
	return handle_online_pages_nid(pfn, nr_pages, online_type, nid);
}

SEC("kprobe/online_pages")
int BPF_KPROBE(online_pages_nid_kprobe, unsigned long pfn, unsigned long nr_pages, int online_type, int nid)
{
	return handle_online_pages_nid(pfn, nr_pages, online_type, nid);
}

SEC("fentry/memory_subsys_offline")
int BPF_PROG(offline_fentry, struct device *dev)
{
	return handle_block_entry(ctx, MEMHP_EV_OFFLINE, dev);
}

SEC("kprobe/memory_subsys_offline")
int BPF_KPROBE(offline_kprobe, struct device *dev)
{
	return handle_block_entry(ctx, MEMHP_EV_OFFLINE, dev);
}

SEC("fexit/memory_subsys_offline")
int BPF_PROG(offline_fexit, struct device *dev, int ret)
{
	op_exit(MEMHP_EV_OFFLINE, ret);
	return 0;
}

SEC("kretprobe/memory_subsys_offline")
int BPF_KRETPROBE(offline_kretprobe, int ret)
{
	op_exit(MEMHP_EV_OFFLINE, ret);
	return 0;
}

static __always_inline int handle_offline_pages_entry(unsigned long start_pfn, unsigned long nr_pages,
						      struct zone *zone)
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

static __always_inline int handle_offline_pages_exit(int ret)
{
	struct op *o = op_current(MEMHP_EV_OFFLINE);
	if (o && ret)
		o->inner_ret = ret;
	return 0;
}

SEC("fentry/offline_pages")
int BPF_PROG(offline_pages_fentry, unsigned long start_pfn, unsigned long nr_pages, struct zone *zone)
{
	return handle_offline_pages_entry(start_pfn, nr_pages, zone);
}

SEC("kprobe/offline_pages")
int BPF_KPROBE(offline_pages_kprobe, unsigned long start_pfn, unsigned long nr_pages, struct zone *zone)
{
	return handle_offline_pages_entry(start_pfn, nr_pages, zone);
}

SEC("fexit/offline_pages")
int BPF_PROG(offline_pages_fexit, unsigned long start_pfn, unsigned long nr_pages, struct zone *zone,
	     struct memory_group *group, int ret)
{
	return handle_offline_pages_exit(ret);
}

SEC("kretprobe/offline_pages")
int BPF_KRETPROBE(offline_pages_kretprobe, int ret)
{
	return handle_offline_pages_exit(ret);
}

/* 5.10's offline_pages(start_pfn, nr_pages): the zone is looked up inside
 * (core_fixes.bpf.h: when the zone and group arguments came). */
static __always_inline int handle_offline_pages_pfns(unsigned long start_pfn, unsigned long nr_pages)
{
	struct op *o = op_current(MEMHP_EV_OFFLINE);
	if (!o)
		return 0;
	if (!o->start_pfn || start_pfn < o->start_pfn)
		o->start_pfn = start_pfn;
	o->nr_pages += nr_pages;
	return 0;
}

SEC("fentry/offline_pages")
int BPF_PROG(offline_pages_pfns_fentry, unsigned long start_pfn, unsigned long nr_pages)
{
	return handle_offline_pages_pfns(start_pfn, nr_pages);
}

SEC("kprobe/offline_pages")
int BPF_KPROBE(offline_pages_pfns_kprobe, unsigned long start_pfn, unsigned long nr_pages)
{
	return handle_offline_pages_pfns(start_pfn, nr_pages);
}

SEC("fexit/offline_pages")
int BPF_PROG(offline_pages_pfns_fexit, unsigned long start_pfn, unsigned long nr_pages, int ret)
{
	return handle_offline_pages_exit(ret);
}

SEC("kretprobe/offline_pages")
int BPF_KRETPROBE(offline_pages_pfns_kretprobe, int ret)
{
	return handle_offline_pages_exit(ret);
}

static __always_inline int handle_deinit_memmap(unsigned long pfn, unsigned long nr_pages)
{
	struct op *o = op_current(MEMHP_EV_OFFLINE);
	if (o) {
		if (!o->start_pfn || pfn < o->start_pfn)
			o->start_pfn = pfn;
		o->nr_pages += nr_pages;
	}
	return 0;
}

SEC("fentry/mhp_deinit_memmap_on_memory")
int BPF_PROG(deinit_memmap_fentry, unsigned long pfn, unsigned long nr_pages)
{
	return handle_deinit_memmap(pfn, nr_pages);
}

SEC("kprobe/mhp_deinit_memmap_on_memory")
int BPF_KPROBE(deinit_memmap_kprobe, unsigned long pfn, unsigned long nr_pages)
{
	return handle_deinit_memmap(pfn, nr_pages);
}

/* ---- remove -------------------------------------------------------------- */

static __always_inline int handle_remove_entry(void *ctx, u64 start, u64 size)
{
	struct op *o = op_start(MEMHP_EV_REMOVE, ctx);
	if (o) {
		o->start_pfn = start >> PAGE_SHIFT;
		o->nr_pages = size >> PAGE_SHIFT;
		o->kernel_memmap_before = kernel_memmap_at(nr_memmap_pages_addr);
	}
	return 0;
}

SEC("fentry/try_remove_memory")
int BPF_PROG(remove_fentry, u64 start, u64 size)
{
	return handle_remove_entry(ctx, start, size);
}

SEC("kprobe/try_remove_memory")
int BPF_KPROBE(remove_kprobe, u64 start, u64 size)
{
	return handle_remove_entry(ctx, start, size);
}

SEC("fexit/try_remove_memory")
int BPF_PROG(remove_fexit, u64 start, u64 size, int ret)
{
	op_exit(MEMHP_EV_REMOVE, ret);
	return 0;
}

SEC("kretprobe/try_remove_memory")
int BPF_KRETPROBE(remove_kretprobe, int ret)
{
	op_exit(MEMHP_EV_REMOVE, ret);
	return 0;
}

/* 5.10's try_remove_memory(nid, start, size) and arch_remove_memory(nid,
 * ...): the node parameter was dropped in 5.15 by e1c158e49566
 * ("mm/memory_hotplug: remove nid parameter from remove_memory() and
 * friends") and 65a2aa5f482e ("mm/memory_hotplug: remove nid parameter from
 * arch_remove_memory()"). */
SEC("fentry/try_remove_memory")
int BPF_PROG(remove_nid_fentry, int nid, u64 start, u64 size)
{
	return handle_remove_entry(ctx, start, size);
}

SEC("kprobe/try_remove_memory")
int BPF_KPROBE(remove_nid_kprobe, int nid, u64 start, u64 size)
{
	return handle_remove_entry(ctx, start, size);
}

SEC("fexit/try_remove_memory")
int BPF_PROG(remove_nid_fexit, int nid, u64 start, u64 size, int ret)
{
	op_exit(MEMHP_EV_REMOVE, ret);
	return 0;
}

SEC("kretprobe/try_remove_memory")
int BPF_KRETPROBE(remove_nid_kretprobe, int ret)
{
	op_exit(MEMHP_EV_REMOVE, ret);
	return 0;
}

static __always_inline int handle_arch_remove_entry(struct vmem_altmap *altmap)
{
	struct op *o = op_current(MEMHP_EV_REMOVE);
	if (o && altmap) {
		o->altmap_pages += BPF_CORE_READ(altmap, alloc);
		o->flags |= MEMHP_F_ALTMAP;
	}
	return 0;
}

SEC("fentry/arch_remove_memory")
int BPF_PROG(arch_remove_fentry, u64 start, u64 size, struct vmem_altmap *altmap)
{
	return handle_arch_remove_entry(altmap);
}

SEC("kprobe/arch_remove_memory")
int BPF_KPROBE(arch_remove_kprobe, u64 start, u64 size, struct vmem_altmap *altmap)
{
	return handle_arch_remove_entry(altmap);
}

SEC("fentry/arch_remove_memory")
int BPF_PROG(arch_remove_nid_fentry, int nid, u64 start, u64 size, struct vmem_altmap *altmap)
{
	return handle_arch_remove_entry(altmap);
}

SEC("kprobe/arch_remove_memory")
int BPF_KPROBE(arch_remove_nid_kprobe, int nid, u64 start, u64 size, struct vmem_altmap *altmap)
{
	return handle_arch_remove_entry(altmap);
}

char LICENSE[] SEC("license") = "GPL";

/* ---- sub-phases (v6) -----------------------------------------------------
 * Functions timed inside an op, for the per-block cost breakdown of the
 * scale ramp. Each is optional: the loader attaches what this kernel lets it
 * (fentry/fexit or kprobe/kretprobe, the pair together) and leaves out the
 * rest, whose time then stays with the function that called it. Not inlined
 * on Debian's 6.12 and 7.2 (their BTF has them); zone_pcp_update() and
 * resize_zone_range() are, so their time is their caller's. */

#define SUB_PROGS(fn, slot)                                    \
	SEC("fentry/" #fn)                                     \
	int BPF_PROG(sub_##fn##_fentry)                        \
	{                                                      \
		sub_enter(slot);                               \
		return 0;                                      \
	}                                                      \
	SEC("fexit/" #fn)                                      \
	int BPF_PROG(sub_##fn##_fexit)                         \
	{                                                      \
		return sub_exit(slot);                         \
	}                                                      \
	SEC("kprobe/" #fn)                                     \
	int BPF_KPROBE(sub_##fn##_kprobe)                      \
	{                                                      \
		sub_enter(slot);                               \
		return 0;                                      \
	}                                                      \
	SEC("kretprobe/" #fn)                                  \
	int BPF_KRETPROBE(sub_##fn##_kretprobe)                \
	{                                                      \
		return sub_exit(slot);                         \
	}

SUB_PROGS(arch_add_memory, MEMHP_SUB_ARCH_ADD_MEMORY)
SUB_PROGS(vmemmap_populate, MEMHP_SUB_VMEMMAP_POPULATE)
SUB_PROGS(init_memory_mapping, MEMHP_SUB_INIT_MEMORY_MAPPING)
SUB_PROGS(create_memory_block_devices, MEMHP_SUB_CREATE_MEMORY_BLOCK_DEVICES)
SUB_PROGS(online_pages, MEMHP_SUB_ONLINE_PAGES)
SUB_PROGS(memmap_init_range, MEMHP_SUB_MEMMAP_INIT_RANGE)
SUB_PROGS(set_zone_contiguous, MEMHP_SUB_SET_ZONE_CONTIGUOUS)
SUB_PROGS(build_all_zonelists, MEMHP_SUB_BUILD_ALL_ZONELISTS)
SUB_PROGS(init_per_zone_wmark_min, MEMHP_SUB_INIT_PER_ZONE_WMARK_MIN)
SUB_PROGS(memory_notify, MEMHP_SUB_MEMORY_NOTIFY)
SUB_PROGS(undo_isolate_page_range, MEMHP_SUB_UNDO_ISOLATE_PAGE_RANGE)
SUB_PROGS(kswapd_run, MEMHP_SUB_KSWAPD_RUN)
SUB_PROGS(kcompactd_run, MEMHP_SUB_KCOMPACTD_RUN)
SUB_PROGS(mhp_init_memmap_on_memory, MEMHP_SUB_MHP_INIT_MEMMAP_ON_MEMORY)

/* move_pfn_range_to_zone(zone, start_pfn, nr_pages, ...): also the zone's
 * span it found, which set_zone_contiguous() walks at its end. */
static __always_inline int sub_move_pfn_enter(struct zone *zone)
{
	struct op *o = sub_enter(MEMHP_SUB_MOVE_PFN_RANGE_TO_ZONE);
	if (o) {
		o->zone_start_pfn = BPF_CORE_READ(zone, zone_start_pfn);
		o->zone_spanned_pages = BPF_CORE_READ(zone, spanned_pages);
		o->sub_flags |= MEMHP_F_ZONE_SPAN;
	}
	return 0;
}

SEC("fentry/move_pfn_range_to_zone")
int BPF_PROG(sub_move_pfn_range_to_zone_fentry, struct zone *zone)
{
	return sub_move_pfn_enter(zone);
}

SEC("fexit/move_pfn_range_to_zone")
int BPF_PROG(sub_move_pfn_range_to_zone_fexit)
{
	return sub_exit(MEMHP_SUB_MOVE_PFN_RANGE_TO_ZONE);
}

SEC("kprobe/move_pfn_range_to_zone")
int BPF_KPROBE(sub_move_pfn_range_to_zone_kprobe, struct zone *zone)
{
	return sub_move_pfn_enter(zone);
}

SEC("kretprobe/move_pfn_range_to_zone")
int BPF_KRETPROBE(sub_move_pfn_range_to_zone_kretprobe)
{
	return sub_exit(MEMHP_SUB_MOVE_PFN_RANGE_TO_ZONE);
}
