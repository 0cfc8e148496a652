/* SPDX-License-Identifier: GPL-2.0-only */
/* The per-task operation state both probe objects share (hotplug.bpf.c on
 * functions, hotplug_tp.bpf.c on the memory_hotplug trace events).
 *
 * Include it after defining, in the object: struct op (with id, t0, type,
 * nid, parent_id, nested_ns, nested_count and sp fields), the `ops` hash map
 * (tid -> struct op, the innermost op in flight), the `outer_ops` hash map
 * (tid -> struct op, an op suspended while a nested one runs), the `events`
 * ring buffer, and the globals `inflight`, `dropped_events`,
 * `interrupt_page_events`, `stale_ops`, `ops_map_full` and `nest_overflow`.
 * Counters are bumped only with __sync_fetch_and_add whose result is unused
 * (the plain atomic add): a fetching atomic (BPF_FETCH, Linux 5.12) is
 * rejected by 5.10's verifier ("BPF_STX uses reserved fields"); tests/quick
 * checks the objects for them. */
#ifndef MEMHP_HOTPLUG_OPS_BPF_H
#define MEMHP_HOTPLUG_OPS_BPF_H

/* An object that times sub-phases defines this: the outer op `outer` gets
 * the task back at `now` after a nested op that began at `child_t0`. */
#ifndef MEMHP_OP_RESUMED
#define MEMHP_OP_RESUMED(outer, child_t0, now) do { } while (0)
#endif

static __always_inline __u32 tid(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

/* Starts an op of `type` on this task. When one is already in flight,
 * returns it if `nested_joins` (an inner function of the same operation:
 * the outer one owns the op), else 0 (keep the op that is there). */
/* Op ids without a fetching atomic: a per-CPU sequence number with the CPU
 * in the low 16 bits. A BPF program runs with migration disabled, so this
 * CPU's slot is the program's own. Never 0. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} op_seq SEC(".maps");

static __always_inline __u64 new_op_id(void)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&op_seq, &zero);
	if (!seq)
		return 0;
	*seq += 1;
	return (*seq << 16) | (bpf_get_smp_processor_id() & 0xffff);
}

static __always_inline struct op *op_begin(__u32 type, bool nested_joins)
{
	__u32 t = tid();
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (o)
		return nested_joins ? o : 0;
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

/* x86-64's THREAD_SIZE without KASAN (Debian's kernels, and ours). */
#define MEMHP_TASK_STACK_SIZE (16 * 1024)

/* The op this task has in flight, for a page-allocator event whose
 * struct page * is ctx[0] (stored in *page, as a plain number: the verifier
 * allows no arithmetic on tp_btf's trusted pointer), or 0.
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
	*page = 0;
	bpf_probe_read_kernel(page, sizeof(*page), &ctx[0]);
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

/* Forgets the task's ops, in flight and suspended. */
static __always_inline void op_forget(__u32 t)
{
	bpf_map_delete_elem(&outer_ops, &t);
	if (bpf_map_delete_elem(&ops, &t) == 0)
		__sync_fetch_and_sub(&inflight, 1);
}

/* Starts an op of `type` from the program whose context is `ctx`. An op of
 * the same type in flight is returned when `same_type_joins` (an inner
 * function of the same operation), else 0; an op of another type makes this
 * one nested in it (one level: deeper nesting is counted in nest_overflow
 * and not traced). */
static __always_inline struct op *op_enter(__u32 type, bool same_type_joins, void *ctx)
{
	__u32 t = tid();
	__u64 sp = stack_pos(ctx);
	__u64 parent = 0;
	__u32 parent_type = 0;
	struct op *o = bpf_map_lookup_elem(&ops, &t);
	if (o && sp >= o->sp) {
		__sync_fetch_and_add(&stale_ops, 1);
		op_forget(t);
		o = 0;
	}
	if (o) {
		if (o->type == type)
			return same_type_joins ? o : 0;
		if (bpf_map_update_elem(&outer_ops, &t, o, BPF_NOEXIST)) {
			__sync_fetch_and_add(&nest_overflow, 1);
			return 0;
		}
		parent = o->id;
		parent_type = o->type;
		op_drop();
	}
	o = op_begin(type, false);
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
			MEMHP_OP_RESUMED(outer, o->t0, now);
			bpf_map_update_elem(&ops, &t, outer, BPF_EXIST);
			bpf_map_delete_elem(&outer_ops, &t);
			return;
		}
	}
	op_drop();
}

#endif /* MEMHP_HOTPLUG_OPS_BPF_H */
