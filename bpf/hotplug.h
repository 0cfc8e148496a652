/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
#ifndef MEMHP_HOTPLUG_H
#define MEMHP_HOTPLUG_H
/* Configuration hotplug.bpf.c shares with its loader (read-only globals set
 * before load): fixed-width fields only. */

/* [start, end) of a kernel function, from /proc/kallsyms; start 0 = unknown. */
struct memhp_code_range {
	__u64 start;
	__u64 end;
};

#endif
