/* SPDX-License-Identifier: GPL-2.0-only */
/* What both hot-plug probe objects share: hotplug.bpf.c (function probes)
 * and hotplug_tp.bpf.c (the memory_hotplug trace events of kernel-patches/).
 * This header owns all of it, the objects define none of it:
 * - the per-task operation state: struct op, the `ops` map (tid -> the
 *   innermost op in flight), the `outer_ops` map (tid -> an op suspended
 *   while a nested one runs);
 * - the `events` ring buffer that carries struct memhp_event;
 * - the counters user space reads through the skeletons
 *   (collector/src/probes.cpp, tp_probes.cpp): inflight, dropped_events,
 *   interrupt_page_events, stale_ops, ops_map_full, nest_overflow;
 * - the helpers that begin, nest and end ops (op_enter, op_end) and the
 *   ones that fill events (event_reserve and the three kinds built on it:
 *   op_event, populate_event, page_event_reserve).
 * Counters are bumped only with __sync_fetch_and_add whose result is unused
 * (the plain atomic add): a fetching atomic (BPF_FETCH, Linux 5.12) is
 * rejected by 5.10's verifier ("BPF_STX uses reserved fields"); tests/quick
 * checks the objects for them. */
#ifndef MEMHP_HOTPLUG_OPS_BPF_H
#define MEMHP_HOTPLUG_OPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "core_fixes.bpf.h"
#include "memhp_event.h"

#define MAX_OPS 1024
#define SUB_DEPTH 8 /* a power of two: indexes are masked for the verifier */

/* One operation in flight on a task. Both objects use one layout; the
 * fields marked for one object stay 0 in the other (and so do the event
 * fields they feed). */
struct op {
	__u64 id; /* never 0 (new_op_id) */
	__u64 t0; /* the begin; collector/src/op_health.cpp reads it at offset 8 */
	__u32 type;
	__s32 nid;
	__u64 start_pfn;
	__u64 nr_pages;
	__u64 mhp_flags;
	__u64 altmap_pages;
	__u64 vmemmap_pages;
	__u32 flags;
	__u32 caller;
	char zone[16];
	__s64 kernel_memmap_before; /* add/remove: nr_memmap_pages at the begin, -1 unknown */
	/* Nesting (op_enter, op_end). */
	__u64 parent_id;    /* the op this one runs inside (auto-online in an add), or 0 */
	__u32 parent_type;  /* the parent's type when parent_id is set */
	__u32 nested_count; /* nested ops that ran inside this one */
	__u64 nested_ns;    /* time spent in nested ops */
	__u64 sp;           /* stack position of the begin (stack_pos) */
	/* Populate timing: hotplug_tp.bpf.c's populate_begin event, or
	 * hotplug.bpf.c's __add_pages entry (inferred populate). */
	__u64 populate_t0;
	/* add: pages summed instead of sent one event each (op_sums_page). */
	__u64 summed_other_pages;
	__u64 summed_freed_pages;
	/* hotplug.bpf.c only. */
	__u64 populate_direct_t0; /* vmemmap_populate entry */
	__s32 inner_ret;          /* offline_pages()' return: the reason an offline failed */
	/* Sub-phases (v6): a stack of the timed functions the task is in, the
	 * op's own function at the bottom; time since sub_mark belongs to the
	 * top. sub_depth 0: not set up (always so in hotplug_tp.bpf.c). */
	__u32 sub_depth;
	__u32 sub_flags; /* MEMHP_F_ZONE_SPAN, MEMHP_F_SUB_UNBALANCED */
	__u8 sub_stack[SUB_DEPTH];
	__u64 sub_mark;
	__u64 sub_ns[MEMHP_SUB_SLOTS];
	__u64 zone_start_pfn; /* the zone move_pfn_range_to_zone() found (MEMHP_F_ZONE_SPAN) */
	__u64 zone_spanned_pages;
	/* hotplug_tp.bpf.c only: an add's mhp_memmap_alloc events, summed. */
	__u64 memmap_altmap_pages;
	__u64 memmap_buddy_pages;
	__u64 memmap_remote_pages;
	__u64 memmap_base_pages;
	__u32 memmap_failed;
	__u32 _pad;
};

_Static_assert(__builtin_offsetof(struct op, t0) == 8, "op_health.cpp reads t0 at offset 8");
/* op_begin builds a fresh op on the BPF stack (512 bytes for the whole
 * program; the begin programs use up to 448 with a 376-byte op). */
_Static_assert(sizeof(struct op) <= 384, "struct op outgrows the BPF stack of the begin programs");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OPS);
	__type(key, __u32); /* tid */
	__type(value, struct op);
} ops SEC(".maps");

/* An op suspended while a nested one runs on the same task. */
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

/* Op ids without a fetching atomic: a per-CPU sequence number with the CPU
 * in the low 16 bits. A BPF program runs with migration disabled, so this
 * CPU's slot is the program's own. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} op_seq SEC(".maps");

/* Operations in flight, system-wide: the page-allocator hooks return at
 * once when this is zero. */
volatile __u32 inflight = 0;
__u64 dropped_events = 0;        /* events the ring buffer had no room for */
__u64 interrupt_page_events = 0; /* page events in interrupt context, not billed (op_of_page_event) */
__u64 stale_ops = 0;             /* ops whose exit never came, found at the task's next begin */
__u64 ops_map_full = 0;          /* begins not traced: `ops` was full */
__u64 nest_overflow = 0;         /* begins not traced: nested two deep */

static __always_inline __u32 tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

/* Never 0. */
static __always_inline __u64 new_op_id(void)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&op_seq, &zero);
	if (!seq)
		return 0;
	*seq += 1;
	return (*seq << 16) | (bpf_get_smp_processor_id() & 0xffff);
}

/* A fresh op of `type` on this task, which has none in `ops`; 0 when
 * `ops` is full. */
static __always_inline struct op *op_begin(__u32 type)
{
	__u32 t = tid();
	struct op fresh = {};
	fresh.id = new_op_id();
	if (!fresh.id)
		return 0;
	fresh.t0 = bpf_ktime_get_ns();
	fresh.type = type;
	fresh.nid = -1;
	if (bpf_map_update_elem(&ops, &t, &fresh, BPF_NOEXIST))
		return 0;
	__sync_fetch_and_add(&inflight, 1);
	return bpf_map_lookup_elem(&ops, &t);
}

/* The task's op in flight if it is of `type`, else 0. */
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

/* Forgets the task's ops, in flight and suspended. */
static __always_inline void op_forget(__u32 t)
{
	bpf_map_delete_elem(&outer_ops, &t);
	if (bpf_map_delete_elem(&ops, &t) == 0)
		__sync_fetch_and_sub(&inflight, 1);
}

/* x86-64's THREAD_SIZE without KASAN (Debian's kernels, and ours). */
#define MEMHP_TASK_STACK_SIZE (16 * 1024)

/* The op this task has in flight, for a page-allocator event whose
 * struct page * is ctx[0] (stored in *page, as a plain number: the verifier
 * allows no arithmetic on tp_btf's trusted pointer, and may take it to be
 * non-NULL, core_fixes.bpf.h tp_arg), or 0.
 * mm_page_alloc also fires for an allocation that failed (page NULL), e.g.
 * vmemmap's order-9 attempt before its base-page fallback: nothing was
 * taken, 0. An interrupt that arrives during the op (say virtio-net refilling its
 * receive ring in softirq) allocates and frees pages while `current` is
 * still the op's task, so tid() alone would bill them to the op. Interrupts
 * and softirqs run on the per-CPU IRQ stack, not the task's: `ctx` (the
 * tracepoint's argument array, a local of bpf_trace_run*()) tells which
 * stack this is. Such events are counted in interrupt_page_events. */
static __always_inline struct op *op_of_page_event(unsigned long long *ctx, unsigned long *page)
{
	*page = tp_arg(ctx, 0);
	if (!*page)
		return 0;
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (!o)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned long base = (unsigned long)BPF_CORE_READ(task, stack);
	unsigned long sp = 0;
	bpf_probe_read_kernel(&sp, sizeof(sp), &ctx);
	if (sp - base >= MEMHP_TASK_STACK_SIZE) {
		__sync_fetch_and_add(&interrupt_page_events, 1);
		return 0;
	}
	return o;
}

/* ---- sub-phase clock (hotplug.bpf.c times them; see struct op) ---------- */

/* Charges the time since sub_mark to the function on top of the stack. */
static __always_inline void sub_charge(struct op *o, __u64 now)
{
	__u32 d = o->sub_depth;
	if (d == 0 || d > SUB_DEPTH)
		return;
	__u32 top = o->sub_stack[(d - 1) & (SUB_DEPTH - 1)];
	if (now > o->sub_mark)
		o->sub_ns[top & (MEMHP_SUB_SLOTS - 1)] += now - o->sub_mark;
	o->sub_mark = now;
}

/* The outer op `outer` gets the task back at `now` after a nested op that
 * began at `child_t0`: the nested op's time is not the outer op's, so its
 * sub-phase clock stopped at the nested op's begin and restarts now. */
static __always_inline void op_resumed(struct op *outer, __u64 child_t0, __u64 now)
{
	if (outer->sub_depth > 0 && child_t0 > outer->sub_mark) {
		__u32 top = outer->sub_stack[(outer->sub_depth - 1) & (SUB_DEPTH - 1)];
		outer->sub_ns[top & (MEMHP_SUB_SLOTS - 1)] += child_t0 - outer->sub_mark;
	}
	outer->sub_mark = now;
}

/* ---- nesting and stale ops -------------------------------------------------
 * With auto-online (auto_online_blocks=online*), add_memory_resource() onlines
 * the new blocks itself: memory_subsys_online() runs inside the add. An op of
 * another type that begins while one is in flight on the task is a nested
 * phase: the outer op moves to `outer_ops`, the nested one becomes the task's
 * op (page events are billed to it) and records its parent's id; when it ends
 * the outer op comes back with the nested time added to its nested_ns.
 *
 * An op whose exit never came (a missed kretprobe) would otherwise stay in
 * `ops` and swallow the task's next op. A begin runs deeper in the stack than
 * the op it nests in; one at the same depth or higher means the op in flight
 * has returned: it is stale, counted in stale_ops and forgotten. `ctx`
 * points into the probe's frame on the task stack for every program type
 * used here (fentry trampoline, kprobe pt_regs, tp_btf arguments). */

static __always_inline __u64 stack_pos(void *ctx)
{
	__u64 sp = 0;
	bpf_probe_read_kernel(&sp, sizeof(sp), &ctx);
	return sp;
}

/* What a begin does when an op of its own type is in flight on the task
 * (and the stack-depth test did not find that op stale). */
enum op_same_type {
	/* The begin is an inner function of the same operation (an add's
	 * add_memory_resource() under add_memory_driver_managed()): it joins
	 * the op in flight, which the outer function owns. */
	OP_SAME_JOINS,
	/* Such a begin never happens while the op runs (an online, offline or
	 * remove never begins inside one of its own type), so the op in flight
	 * has missed its exit: it is stale (stale_ops, "missed exit" in user
	 * space), forgotten with the op it suspended, and a fresh op begins.
	 * The stack-depth test alone cannot tell across system calls, which
	 * each start at a random stack offset (CONFIG_RANDOMIZE_KSTACK_OFFSET_
	 * DEFAULT=y in Debian's kernels): a later write to a block's state can
	 * run deeper than the one whose exit was missed. */
	OP_SAME_ENDS_STALE,
	/* The begin is not traced (0); the op in flight keeps the task. */
	OP_SAME_KEEPS,
};

/* Starts an op of `type` from the program whose context is `ctx`. An op of
 * the same type in flight is handled as `same` says (enum op_same_type);
 * an op of another type makes this one nested in it (one level: deeper
 * nesting is counted in nest_overflow and not traced).
 *
 * hotplug.bpf.c passes OP_SAME_JOINS for an add and OP_SAME_ENDS_STALE for
 * the others: its exits are fexit or kretprobe programs, and a kretprobe
 * can miss one (no free instance; the VM test vm.Trace61Off misses some on
 * purpose, ProbeOptions::test_miss_online_exits).
 * hotplug_tp.bpf.c passes OP_SAME_KEEPS, as it always has: the kernel emits
 * each begin event with its end on every return path of the same function
 * (kernel-patches/{6.1,7.2}/0001 and 0003), so an end is not missed the
 * way a kretprobe's is, and a begin of the type in flight is not expected
 * there; were one seen, the op that began first keeps the task. */
static __always_inline struct op *op_enter(__u32 type, enum op_same_type same, void *ctx)
{
	__u32 t = tid();
	__u64 sp = stack_pos(ctx);
	__u64 parent = 0;
	__u32 parent_type = 0;
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (o && (sp >= o->sp || (o->type == type && same == OP_SAME_ENDS_STALE))) {
		__sync_fetch_and_add(&stale_ops, 1);
		op_forget(t);
		o = 0;
	}
	if (o) {
		if (o->type == type)
			return same == OP_SAME_JOINS ? o : 0;
		if (bpf_map_update_elem(&outer_ops, &t, o, BPF_NOEXIST)) {
			__sync_fetch_and_add(&nest_overflow, 1);
			return 0;
		}
		parent = o->id;
		parent_type = o->type;
		op_drop();
	}
	o = op_begin(type);
	if (!o) {
		__sync_fetch_and_add(&ops_map_full, 1);
		if (parent) { /* put the outer op back */
			struct op *outer = bpf_map_lookup_elem(&outer_ops, &t);
			if (outer && bpf_map_update_elem(&ops, &t, outer, BPF_NOEXIST) == 0)
				__sync_fetch_and_add(&inflight, 1);
			bpf_map_delete_elem(&outer_ops, &t);
		}
		return 0;
	}
	o->sp = sp;
	o->parent_id = parent;
	o->parent_type = parent_type;
	return o;
}

/* Ends the task's op at `now` (the end its record carries): a nested op
 * hands the task back to its parent, with the time it took added to the
 * parent's nested_ns. */
static __always_inline void op_end(__u64 now)
{
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (!o)
		return;
	if (o->parent_id) {
		struct op *outer = bpf_map_lookup_elem(&outer_ops, &t);
		if (outer && outer->id == o->parent_id) {
			outer->nested_ns += now - o->t0;
			outer->nested_count += 1;
			op_resumed(outer, o->t0, now);
			bpf_map_update_elem(&ops, &t, outer, BPF_EXIST);
			bpf_map_delete_elem(&outer_ops, &t);
			return;
		}
	}
	op_drop();
}

/* ---- events ----------------------------------------------------------------
 * Every event is reserved here: zeroed, then stamped with what all kinds
 * carry. page_nid is -1 (unknown) unless a page event sets it together with
 * MEMHP_F_PAGE_NID. */

/* A zeroed event in the ring buffer, or 0 (counted in dropped_events). */
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

/* An event of `type` about op `o` on this task at `now`, or 0. */
static __always_inline struct memhp_event *event_reserve(__u32 type, const struct op *o, __u64 now)
{
	struct memhp_event *e = reserve();
	if (!e)
		return 0;
	e->type = type;
	e->tid = tid();
	e->op_id = o->id;
	e->ts_ns = now;
	e->page_nid = -1;
	return e;
}

/* The record of op `o` ending at `now` with `ret` (0 falls back to
 * o->inner_ret), unsubmitted, or 0: every field the op gathered, the
 * kernel's memmap count at `nr_memmap_pages_addr` for an add or remove
 * (core_fixes.bpf.h kernel_memmap_at), and its sub-phases if it timed any
 * (charged up to `now`). */
static __always_inline struct memhp_event *op_event(struct op *o, __u64 now, int ret, __u64 nr_memmap_pages_addr)
{
	struct memhp_event *e = event_reserve(o->type, o, now);
	if (!e)
		return 0;
	e->duration_ns = now - o->t0;
	e->nid = o->nid;
	e->ret = ret ? ret : o->inner_ret;
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
	e->summed_other_pages = o->summed_other_pages;
	e->summed_freed_pages = o->summed_freed_pages;
	if (o->type == MEMHP_EV_ADD || o->type == MEMHP_EV_REMOVE) {
		e->kernel_memmap_before = o->kernel_memmap_before;
		e->kernel_memmap_after = kernel_memmap_at(nr_memmap_pages_addr);
		if (e->kernel_memmap_before >= 0 && e->kernel_memmap_after >= 0)
			e->flags |= MEMHP_F_KERNEL_MEMMAP;
	}
	__builtin_memcpy(e->zone, o->zone, sizeof(e->zone));
	if (o->sub_depth > 0) {
		sub_charge(o, now);
		__builtin_memcpy(e->sub_ns, o->sub_ns, sizeof(e->sub_ns));
		e->flags |= MEMHP_F_SUB_PHASES | (o->sub_flags & (MEMHP_F_ZONE_SPAN | MEMHP_F_SUB_UNBALANCED));
		if (o->sub_depth != 1)
			e->flags |= MEMHP_F_SUB_UNBALANCED;
		e->zone_start_pfn = o->zone_start_pfn;
		e->zone_spanned_pages = o->zone_spanned_pages;
	}
	return e;
}

/* Sends op `o`'s record (op_event) and ends the op (op_end). */
static __always_inline void op_finish(struct op *o, int ret, __u64 nr_memmap_pages_addr)
{
	__u64 now = bpf_ktime_get_ns();
	struct memhp_event *e = op_event(o, now, ret, nr_memmap_pages_addr);
	if (e)
		bpf_ringbuf_submit(e, 0);
	op_end(now);
}

/* Sends a populate record for add `o`: vmemmap population of `nr` pages
 * from `pfn` on `nid` that began at `t0` and ends now. False when the ring
 * buffer had no room. */
static __always_inline bool populate_event(struct op *o, __u64 t0, int nid, __u64 pfn, __u64 nr, int ret,
					   __u32 flags)
{
	struct memhp_event *e = event_reserve(MEMHP_EV_POPULATE, o, bpf_ktime_get_ns());
	if (!e)
		return false;
	e->duration_ns = e->ts_ns - t0;
	e->nid = nid;
	e->ret = ret;
	e->start_pfn = pfn;
	e->nr_pages = nr;
	e->flags = flags;
	bpf_ringbuf_submit(e, 0);
	return true;
}

/* An add needs an event of its own only for the memmap's and the page
 * tables' pages (node, order, site). Everything else the task takes or
 * gives back meanwhile only counts towards the free memory consumed, and
 * under fragmentation the memmap allocation's own reclaim and compaction
 * free hundreds of pages in a burst: one event each overran the ring
 * buffer and lost memmap pages. Such pages are summed in the op, sent with
 * the add; true when this one was. `site` is MEMHP_SITE_UNKNOWN where the
 * object does not classify call sites (the tracepoint object: only frees
 * are summed there). */
static __always_inline bool op_sums_page(struct op *o, __u32 type, __u32 site, unsigned int order)
{
	if (o->type != MEMHP_EV_ADD || (type != MEMHP_EV_PAGE_FREE && site != MEMHP_SITE_OTHER))
		return false;
	__u64 n = 1ull << (order & 31);
	if (type == MEMHP_EV_PAGE_FREE)
		o->summed_freed_pages += n;
	else
		o->summed_other_pages += n;
	return true;
}

/* A page event (MEMHP_EV_PAGE_ALLOC/FREE) billed to op `o`, unsubmitted,
 * or 0. */
static __always_inline struct memhp_event *page_event_reserve(__u32 type, const struct op *o, __u64 pfn,
							       unsigned int order, gfp_t gfp)
{
	struct memhp_event *e = event_reserve(type, o, bpf_ktime_get_ns());
	if (!e)
		return 0;
	e->op_type = o->type;
	e->pfn = pfn;
	e->order = order;
	e->gfp = gfp;
	e->nid = o->nid;
	return e;
}

/* The pfn of the struct page at `addr`; `vmemmap_base_at` is the address
 * of the kernel's vmemmap_base (KASLR moves the vmemmap). */
static __always_inline __u64 vmemmap_to_pfn(const void *vmemmap_base_at, unsigned long addr)
{
	unsigned long base = 0;
	bpf_probe_read_kernel(&base, sizeof(base), vmemmap_base_at);
	return (addr - base) / bpf_core_type_size(struct page);
}

#endif /* MEMHP_HOTPLUG_OPS_BPF_H */
