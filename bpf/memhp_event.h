/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
#ifndef MEMHP_EVENT_H
#define MEMHP_EVENT_H
/* The one record memhp's hot-plug probes send to user space through the ring
 * buffer. Shared by hotplug.bpf.c and the collector: fixed-width fields only;
 * the C++ side static_asserts the size. Bump MEMHP_EVENT_VERSION on change. */

#define MEMHP_EVENT_VERSION 7

enum memhp_event_type {
	MEMHP_EV_ADD = 1,        /* add_memory_resource() returned */
	MEMHP_EV_POPULATE = 2,   /* vmemmap population finished (direct or inferred) */
	MEMHP_EV_ONLINE = 3,     /* memory_subsys_online() returned */
	MEMHP_EV_OFFLINE = 4,    /* memory_subsys_offline() returned */
	MEMHP_EV_REMOVE = 5,     /* try_remove_memory() returned */
	MEMHP_EV_PAGE_ALLOC = 6, /* page allocator gave pages to an op in flight */
	MEMHP_EV_PAGE_FREE = 7,  /* page allocator took pages back during an op */
};

enum memhp_caller {
	MEMHP_CALLER_ADD_MEMORY = 0,     /* __add_memory/add_memory: ACPI DIMMs, balloons */
	MEMHP_CALLER_DRIVER_MANAGED = 1, /* add_memory_driver_managed: virtio-mem, dax/kmem */
};

/* flags */
#define MEMHP_F_ALTMAP 0x1         /* a vmem_altmap was in effect (memmap on the added memory) */
#define MEMHP_F_POPULATE_DIRECT 0x2 /* populate timed at vmemmap_populate itself, not inferred */
#define MEMHP_F_PAGE_NID 0x4        /* page events: page_nid holds the node from page->flags */
#define MEMHP_F_MEMMAP_EVENTS 0x8   /* add: the memmap_* fields hold what mhp_memmap_alloc reported */
#define MEMHP_F_KERNEL_MEMMAP 0x10  /* add/remove: kernel_memmap_* hold nr_memmap_pages (Linux 6.11+) */
#define MEMHP_F_SUB_PHASES 0x20     /* operations (v6): sub_ns holds the op's own time split by function */
#define MEMHP_F_ZONE_SPAN 0x40      /* operations (v6): zone_* hold the span move_pfn_range_to_zone saw */
#define MEMHP_F_SUB_UNBALANCED 0x80 /* operations (v6): a timed function's exit was missed (sub_ns still sums up) */

/* v6: the kernel functions timed inside an operation (its sub-phases), each
 * slot of sub_ns the time spent in that function and not in another timed
 * function inside it (exclusive), so the slots of one op add up to its own
 * time. MEMHP_SUB_OWN is the outermost function's time outside all of them. */
enum memhp_sub {
	MEMHP_SUB_OWN = 0,
	MEMHP_SUB_ARCH_ADD_MEMORY = 1,
	MEMHP_SUB_VMEMMAP_POPULATE = 2,
	MEMHP_SUB_INIT_MEMORY_MAPPING = 3,
	MEMHP_SUB_CREATE_MEMORY_BLOCK_DEVICES = 4,
	MEMHP_SUB_ONLINE_PAGES = 5,
	MEMHP_SUB_MOVE_PFN_RANGE_TO_ZONE = 6,
	MEMHP_SUB_MEMMAP_INIT_RANGE = 7,
	MEMHP_SUB_SET_ZONE_CONTIGUOUS = 8,
	MEMHP_SUB_BUILD_ALL_ZONELISTS = 9,
	MEMHP_SUB_INIT_PER_ZONE_WMARK_MIN = 10,
	MEMHP_SUB_MEMORY_NOTIFY = 11,
	MEMHP_SUB_UNDO_ISOLATE_PAGE_RANGE = 12,
	MEMHP_SUB_KSWAPD_RUN = 13,
	MEMHP_SUB_KCOMPACTD_RUN = 14,
	MEMHP_SUB_MHP_INIT_MEMMAP_ON_MEMORY = 15,
	MEMHP_SUB_SLOTS = 16,
};

/* Page-allocator pages taken during an op, by call site (the kernel stack
 * at mm_page_alloc against kernel function ranges from /proc/kallsyms). */
enum memhp_alloc_site {
	MEMHP_SITE_UNKNOWN = 0,   /* no symbol ranges, no stack, or a free */
	MEMHP_SITE_MEMMAP = 1,    /* vmemmap_alloc_block() for struct pages */
	MEMHP_SITE_PAGETABLE = 2, /* page tables: the vmemmap's, or the direct map's (init_memory_mapping) */
	MEMHP_SITE_OTHER = 3,     /* anything else (slab pages for sysfs/kernfs, section bookkeeping) */
};

struct memhp_event {
	__u32 type;        /* enum memhp_event_type */
	__u32 tid;         /* task that ran the operation */
	__u64 op_id;       /* unique per operation; page events carry their op's id */
	__u64 ts_ns;       /* bpf_ktime_get_ns() at the end (or at the page event) */
	__u64 duration_ns; /* for operations */
	__s32 nid;         /* node the memory is added to / belongs to; -1 unknown */
	__s32 ret;         /* 0 or -errno */
	__u64 start_pfn;
	__u64 nr_pages;
	__u64 mhp_flags;     /* add: the mhp_t flags */
	__u64 altmap_pages;  /* add: memmap pages the altmap supplied (sum of altmap->alloc);
	                      * remove: pages handed back through vmem_altmap_free() */
	__u64 vmemmap_pages; /* online/offline: nr_vmemmap_pages of the block(s) */
	__u64 pfn;           /* page events: first pfn */
	__u32 order;         /* page events: allocation order */
	__u32 gfp;           /* page events: gfp flags (alloc only) */
	__u32 flags;         /* MEMHP_F_* */
	__u32 caller;        /* add: enum memhp_caller */
	__u32 op_type;       /* page events: the type of the op in flight (MEMHP_EV_ADD, ...);
	                      * operations (v3): the parent's type when parent_op_id is set */
	__u32 _pad;
	char zone[16];       /* online/offline: zone name */
	__s32 page_nid;      /* page events: node from page->flags, valid with MEMHP_F_PAGE_NID */
	__u32 site;          /* page events: enum memhp_alloc_site */
	/* v3: nested phases (an online inside its add under auto-online). */
	__u64 parent_op_id;  /* operations: the op this one ran inside, or 0 */
	__u64 nested_ns;     /* operations: time spent in nested ops (included in duration_ns) */
	__u32 nested_ops;    /* operations: how many nested ops ran inside */
	__u32 _pad2;
	/* v4: add, on the patched kernels' tracepoint path (MEMHP_F_MEMMAP_EVENTS):
	 * the memmap as the kernel's mhp_memmap_alloc reported it, block by block. */
	__u64 memmap_altmap_pages; /* memmap pages carved from the altmap */
	__u64 memmap_buddy_pages;  /* memmap pages from the page allocator (huge blocks + base pages) */
	__u64 memmap_remote_pages; /* of those, on another node than the one asked for */
	__u64 memmap_base_pages;   /* of those, base pages (no huge block was free) */
	__u32 memmap_failed;       /* memmap blocks that could not be allocated */
	__u32 _pad3;
	/* v5: add/remove (MEMHP_F_KERNEL_MEMMAP): the kernel's own memmap count,
	 * /proc/vmstat nr_memmap_pages, at the op's begin and end. */
	__s64 kernel_memmap_before;
	__s64 kernel_memmap_after;
	/* v6: operations (MEMHP_F_SUB_PHASES): own time per enum memhp_sub, ns. */
	__u64 sub_ns[MEMHP_SUB_SLOTS];
	/* v6: operations (MEMHP_F_ZONE_SPAN): the zone as the last
	 * move_pfn_range_to_zone() inside the op found it, before it grew it. */
	__u64 zone_start_pfn;
	__u64 zone_spanned_pages;
	/* v7: add: pages the task took (site OTHER) and gave back while the add
	 * ran, summed in BPF instead of sent one event each (the memmap
	 * allocation's own reclaim and compaction can free hundreds in a burst). */
	__u64 summed_other_pages;
	__u64 summed_freed_pages;
};

#endif
