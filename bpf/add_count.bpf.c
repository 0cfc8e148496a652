// SPDX-License-Identifier: GPL-2.0-only
/* The smallest memhp probe: counts __add_pages() calls and the pages they
 * add. It proves the build chain (clang -> skeleton -> loader -> guest) end to
 * end. fentry is preferred; the kprobe twin is used where fentry cannot attach
 * (the loader switches the loser off with bpf_program__set_autoload). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "add_count.h"

struct add_count_totals totals = {};

static __always_inline int count(unsigned long nr_pages)
{
	__sync_fetch_and_add(&totals.calls, 1);
	__sync_fetch_and_add(&totals.nr_pages, nr_pages);
	return 0;
}

SEC("fentry/__add_pages")
int BPF_PROG(add_pages_fentry, int nid, unsigned long start_pfn, unsigned long nr_pages)
{
	return count(nr_pages);
}

SEC("kprobe/__add_pages")
int BPF_KPROBE(add_pages_kprobe, int nid, unsigned long start_pfn, unsigned long nr_pages)
{
	return count(nr_pages);
}

char LICENSE[] SEC("license") = "GPL";
