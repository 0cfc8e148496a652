// SPDX-License-Identifier: Apache-2.0
#include "memhp/ab/metrics.hpp"

namespace memhp::ab {

const std::vector<MetricDef>& metric_defs() {
    static const std::vector<MetricDef> defs = {
        {"probe_add_s", "s", Better::Lower,
         "add_memory_resource() duration in the guest kernel (memhp's probes), summed over the cycle's DIMMs; its own "
         "time: an online the kernel runs inside it (auto-online) is left out"},
        {"probe_add_inclusive_s", "s", Better::Lower,
         "the same, including what ran nested inside the add (the kernel's auto-online)"},
        {"probe_nested_ops", "count", Better::Neither,
         "operations that ran nested inside another (onlines inside their add under auto-online)"},
        {"probe_populate_s", "s", Better::Lower,
         "vmemmap population inside the add (direct where the kernel allows, else inferred from __add_pages)"},
        {"probe_online_s", "s", Better::Lower,
         "memory_subsys_online() duration in the guest kernel (onlines each memory block; includes online_pages()), "
         "summed over the blocks"},
        {"probe_offline_s", "s", Better::Lower,
         "memory_subsys_offline() duration in the guest kernel (includes offline_pages()), summed over the blocks"},
        {"probe_remove_s", "s", Better::Lower, "try_remove_memory() duration in the guest kernel"},
        {"wall_add_s", "s", Better::Lower,
         "host wall time of the add phase: QMP object-add + device_add until the guest shows every block; when the "
         "kernel onlines (--online auto), until every block is online"},
        {"wall_online_s", "s", Better::Lower,
         "host wall time of onlining every block through sysfs (only when the lab onlines, --online manual: under "
         "auto-online the host cannot tell the online from its add)"},
        {"wall_offline_s", "s", Better::Lower, "host wall time of offlining every block through sysfs"},
        {"wall_remove_s", "s", Better::Lower,
         "host wall time of device_del until DEVICE_DELETED and the blocks are gone"},
        {"wall_cycle_s", "s", Better::Lower, "host wall time of the four phases together"},
        {"free_consumed_bytes", "bytes", Better::Lower,
         "page-allocator memory the adds took before the new memory was usable (memhp's probes)"},
        {"memfree_drop_at_add_bytes", "bytes", Better::Lower,
         "guest MemFree before the add minus MemFree after it, before online (/proc/meminfo)"},
        {"memmap_page_allocator_bytes", "bytes", Better::Lower,
         "memmap taken from the page allocator (PMD-sized blocks)"},
        {"memmap_altmap_bytes", "bytes", Better::Neither,
         "memmap carved from the hot-added memory itself (vmem_altmap)"},
        {"memmap_remote_bytes", "bytes", Better::Lower, "memmap on another NUMA node than the memory it describes"},
        {"memmap_page_table_bytes", "bytes", Better::Lower,
         "order-0 page-allocator pages taken during the add (vmemmap page tables)"},
        {"node_memtotal_after_online_bytes", "bytes", Better::Neither,
         "target node MemTotal after online (the altmap's pages are not counted as memory)"},
    };
    return defs;
}

const MetricDef* find_metric(const std::string& name) {
    for (const auto& d : metric_defs())
        if (d.name == name) return &d;
    return nullptr;
}

std::string metrics_markdown() {
    std::string md = "| metric | unit | better | meaning |\n|---|---|---|---|\n";
    for (const auto& d : metric_defs())
        md += "| `" + d.name + "` | " + d.unit + " | " + (d.better == Better::Lower ? "lower" : "–") + " | " + d.help +
              " |\n";
    return md;
}

}  // namespace memhp::ab
