/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
#ifndef MEMHP_ADD_COUNT_H
#define MEMHP_ADD_COUNT_H

/* Shared by add_count.bpf.c and its loader: fixed-width fields only. */
struct add_count_totals {
	__u64 calls;
	__u64 nr_pages;
};

#endif
