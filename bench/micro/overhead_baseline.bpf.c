// SPDX-License-Identifier: GPL-2.0-only
/* The baseline for memhp's always-on cost: empty programs on the same
 * tp_btf hooks hotplug.bpf.c keeps attached (mm_page_alloc, mm_page_free).
 * What memhp adds on top of these is what its own code costs. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(empty_page_alloc)
{
	return 0;
}

SEC("tp_btf/mm_page_free")
int BPF_PROG(empty_page_free)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
