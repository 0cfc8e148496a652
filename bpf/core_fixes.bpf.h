/* SPDX-License-Identifier: GPL-2.0-only */
/* The kernel differences memhp's BPF objects read across, in one place, as
 * bcc's libbpf-tools keep theirs: CO-RE type flavours (`___suffix`),
 * field-existence checks and the helpers built on them, each with the
 * commit that made it necessary. A flavour decides by what the running
 * kernel's BTF has, never by a version number.
 *
 * Commit ids are mainline's (12 digits, as in a Fixes: tag); "commit id not
 * verified" says where only the subject and release could be checked.
 *
 * Kernel differences that are not CO-RE live where they must:
 * - Function signatures that changed get a program per signature in
 *   hotplug.bpf.c, and the loader attaches the one the kernel's BTF matches
 *   (collector/src/attach_plan.cpp):
 *   - online_pages(pfn, nr_pages, online_type, nid) on 5.10, (pfn,
 *     nr_pages, zone, group) later: the zone is chosen by the caller since
 *     a08a2ae34613 ("mm,memory_hotplug: allocate memmap from the added
 *     memory range"; the id is verified, the release, 5.14, and that this
 *     is the commit that changed the signature are not);
 *   - offline_pages(start_pfn, nr_pages) on 5.10, (start_pfn, nr_pages,
 *     zone, group) later: the group since 836809ec75cc ("mm/memory_hotplug:
 *     track present pages in memory groups", 5.15), the zone in the same
 *     release (commit id not verified);
 *   - try_remove_memory(nid, start, size) and arch_remove_memory(nid, ...)
 *     on 5.10: e1c158e49566 ("mm/memory_hotplug: remove nid parameter from
 *     remove_memory() and friends") and 65a2aa5f482e ("mm/memory_hotplug:
 *     remove nid parameter from arch_remove_memory()"), both 5.15.
 * - /proc/vmstat nr_memmap_pages exists from 6.11 on, 15995a352474 ("mm:
 *   report per-page metadata information"): hotplug.bpf.c gets its address
 *   from user space (0 without it), hotplug_tp.bpf.c as a weak __ksym;
 *   kernel_memmap_at() below reads either.
 * - vmemmap_populate() is __meminit and notrace up to 6.10: the loader
 *   leaves its programs out and populate is inferred from __add_pages().
 */
#ifndef MEMHP_CORE_FIXES_BPF_H
#define MEMHP_CORE_FIXES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

/* ---- tracepoint arguments that may be NULL -------------------------------
 * 838a10bd2ebf ("bpf: Augment raw_tp arguments with PTR_MAYBE_NULL", 6.13)
 * makes the verifier take a tp_btf pointer argument to be non-NULL unless
 * kernel/bpf/btf.c lists it (raw_tp_null_args), and drop the NULL branch
 * of a test on it. A pointer argument that may be NULL (mm_page_alloc's
 * page for a failed allocation, the populate events' altmap, 6.1's add_end
 * altmap) is therefore read as a plain number: argument i of the event. */
static __always_inline __u64 tp_arg(unsigned long long *ctx, int i)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &ctx[i]);
	return v;
}

/* ---- memory_block: the memmap pages on the block itself ------------------
 * 1a8c64e11043 ("mm/memory_hotplug: embed vmem_altmap details in memory
 * block", 6.6) replaced memory_block.nr_vmemmap_pages with a vmem_altmap
 * pointer whose ->free holds the same count (memory_block_online() reads
 * it so). */
struct memory_block___nr_vmemmap {
	unsigned long nr_vmemmap_pages;
} __attribute__((preserve_access_index));

struct memory_block___altmap {
	struct vmem_altmap *altmap;
} __attribute__((preserve_access_index));

/* The memmap pages a memory block carries on its own memory (0 without
 * memmap_on_memory); `dev` is the block's struct device. */
static __always_inline __u64 block_vmemmap_pages(struct device *dev)
{
	void *mem = (void *)dev - bpf_core_field_offset(struct memory_block, dev);
	if (bpf_core_field_exists(struct memory_block___nr_vmemmap, nr_vmemmap_pages))
		return BPF_CORE_READ((struct memory_block___nr_vmemmap *)mem, nr_vmemmap_pages);
	if (bpf_core_field_exists(struct memory_block___altmap, altmap)) {
		struct vmem_altmap *altmap = BPF_CORE_READ((struct memory_block___altmap *)mem, altmap);
		return altmap ? BPF_CORE_READ(altmap, free) : 0;
	}
	return 0;
}

/* ---- page->flags ----------------------------------------------------------
 * 53fbef56e07d ("mm: introduce memdesc_flags_t", 6.18) wraps page->flags in
 * a struct. */
typedef struct {
	unsigned long f;
} memdesc_flags_t___memhp;

struct page___memdesc {
	memdesc_flags_t___memhp flags;
} __attribute__((preserve_access_index));

static __always_inline __u64 page_flags(struct page *page)
{
	if (bpf_core_type_exists(memdesc_flags_t___memhp))
		return BPF_CORE_READ((struct page___memdesc *)page, flags.f);
	return BPF_CORE_READ(page, flags);
}

/* ---- nr_memmap_pages ------------------------------------------------------
 * The kernel's own count of memmap pages (/proc/vmstat nr_memmap_pages,
 * mm/vmstat.c's static atomic_long_t, 15995a352474 "mm: report per-page
 * metadata information", 6.11) at kernel address `addr`, or -1 when the
 * kernel has none (`addr` 0) or it cannot be read. */
static __always_inline __s64 kernel_memmap_at(__u64 addr)
{
	__s64 v = -1;
	if (!addr || bpf_probe_read_kernel(&v, sizeof(v), (const void *)addr))
		v = -1;
	return v;
}

/* ---- memhp's own memory_hotplug trace events ------------------------------
 * kernel-patches/ adds them; the committed vmlinux.h comes from an unpatched
 * kernel and has none of their types. The two series differ in two
 * arguments, told apart by the events' entry structs in the running
 * kernel's BTF (kernel-patches/README.md, "What 7.2 changes against 6.1"):
 * - add_end's 5th and remove_end's 4th argument: 6.1 passes the add's one
 *   struct vmem_altmap * (kernel-patches/6.1/0001-mm-memory_hotplug-add-
 *   trace-events-for-adding-and-re.patch, entry field altmap_pages), 7.2,
 *   where every memory block has its own altmap, the memmap pages summed
 *   over them (kernel-patches/7.2/0001-…, entry field memmap_pages);
 * - 7.2's add_begin has a 5th argument, driver_managed (virtio-mem,
 *   dax/kmem: add_memory_driver_managed()), which 6.1's lacks
 *   (kernel-patches/7.2/0001-…). */
struct trace_event_raw_mhp_add_memory_end___v72 {
	unsigned long memmap_pages;
} __attribute__((preserve_access_index));
struct trace_event_raw_mhp_remove_memory_end___v72 {
	unsigned long memmap_pages;
} __attribute__((preserve_access_index));
struct trace_event_raw_mhp_add_memory_begin___v72 {
	bool driver_managed;
} __attribute__((preserve_access_index));

/* 7.2's add_end passes a count of memmap pages, 6.1's a struct vmem_altmap *. */
static __always_inline bool mhp_add_end_passes_count(void)
{
	struct trace_event_raw_mhp_add_memory_end___v72 *v72 = 0;
	return bpf_core_field_exists(v72->memmap_pages);
}

/* Likewise remove_end. */
static __always_inline bool mhp_remove_end_passes_count(void)
{
	struct trace_event_raw_mhp_remove_memory_end___v72 *v72 = 0;
	return bpf_core_field_exists(v72->memmap_pages);
}

/* 7.2's add_begin has the driver_managed argument. */
static __always_inline bool mhp_add_begin_has_driver_managed(void)
{
	struct trace_event_raw_mhp_add_memory_begin___v72 *v72 = 0;
	return bpf_core_field_exists(v72->driver_managed);
}

/* enum mhp_memmap_source, mhp_memmap_alloc's `source` argument
 * (include/trace/events/memory_hotplug.h of
 * kernel-patches/{6.1,7.2}/0002-mm-vmemmap-trace-vmemmap-population-and-
 * memmap-alloc.patch); the same values in both series. */
#define MHP_MEMMAP_ALTMAP 0
#define MHP_MEMMAP_PAGE_ALLOC 1
#define MHP_MEMMAP_BASE_PAGES 2

#endif /* MEMHP_CORE_FIXES_BPF_H */
