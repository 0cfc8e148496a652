// SPDX-License-Identifier: Apache-2.0
#include "guest_options.hpp"

#include <iostream>
#include <sstream>

#include "memhp/size.hpp"

namespace memhp::cli {

void add_guest_options(CLI::App* cmd, GuestOptions& o, bool with_memmap_flag) {
    cmd->add_option("--kernel", o.kernel,
                    "guest kernel, a Debian suite's current image: 5.10 (bullseye), 6.1 or default (bookworm, "
                    "the default), 6.12 (trixie), 7.2 or latest (sid); patched or patched-6.1 (6.1 + memhp's "
                    "memory_hotplug tracepoints from kernel-patches/6.1), patched-7.2 (sid's 7.2 + the series of "
                    "kernel-patches/7.2; both built on first use, 10 to 15 min on 2 cores); unpatched-6.1 or "
                    "unpatched-7.2 (the same source and lab config without the patches: the baseline for what the "
                    "events cost; minutes once the patched one is built); an exact "
                    "Debian package name (linux-image-5.10.0-32-amd64, linux-image-7.2.13+deb14-amd64); or a "
                    "bzImage path. Fetched on first use into $XDG_CACHE_HOME/memhp/kernels with memhp's own apt "
                    "configuration (kernels/apt/<suite>/: the system's sources are not touched; the mirror is "
                    "the system's Debian mirror, MEMHP_DEBIAN_MIRROR overrides it)")
        ->capture_default_str();
    if (with_memmap_flag)
        cmd->add_option("--memmap-on-memory", o.memmap_on_memory,
                        "memory_hotplug.memmap_on_memory= for the guest: on (memmap carved from the added memory, "
                        "vmem_altmap), off (memmap from the page allocator), default (do not pass it)")
            ->check(CLI::IsMember({"on", "off", "default", "1", "0"}))
            ->capture_default_str();
    cmd->add_option("--node-mem", o.node_mem,
                    "boot memory per NUMA node, comma-separated; 0 makes a memoryless node (node 0 needs memory)")
        ->capture_default_str();
    cmd->add_option("--cpus", o.cpus, "guest CPUs (all on node 0)")->capture_default_str();
    cmd->add_option("--slots", o.slots, "DIMM slots")->capture_default_str();
    cmd->add_option("--maxmem", o.maxmem, "maximum guest memory, boot + hot-pluggable (default: boot + 16G)");
    cmd->add_option("--append", o.append, "extra guest kernel command-line word (repeatable)");
    cmd->add_option("--accel", o.accel,
                    "tcg (software emulation, works everywhere) or kvm (hangs on this project's build hosts; guarded "
                    "by a boot watchdog)")
        ->check(CLI::IsMember({"tcg", "kvm"}))
        ->capture_default_str();
    cmd->add_option("--boot-timeout", o.boot_timeout_s, "seconds to wait for the guest to become ready")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    cmd->add_option("--qemu", o.qemu, "QEMU binary")->capture_default_str();
    cmd->add_option("--online", o.online,
                    "who onlines hot-added memory: auto (the kernel, as real hosts do: auto_online_blocks is left as "
                    "the kernel set it, online_movable where that is offline; memhp then traces each online nested "
                    "in its add) or manual (auto_online_blocks=offline and the lab onlines every block)")
        ->check(CLI::IsMember({"auto", "manual"}))
        ->capture_default_str();
}

lab::GuestConfig to_guest_config(const GuestOptions& o) {
    lab::GuestConfig c;
    c.kernel = o.kernel;
    if (o.memmap_on_memory == "on" || o.memmap_on_memory == "1")
        c.memmap_on_memory = true;
    else if (o.memmap_on_memory == "off" || o.memmap_on_memory == "0")
        c.memmap_on_memory = false;
    c.node_mem.clear();
    std::stringstream ss(o.node_mem);
    std::string item;
    while (std::getline(ss, item, ',')) c.node_mem.push_back(item == "0" ? 0 : parse_size(item));
    c.cpus = o.cpus;
    c.slots = o.slots;
    if (!o.maxmem.empty()) c.maxmem = parse_size(o.maxmem);
    c.append = o.append;
    c.accel = o.accel;
    c.boot_timeout = std::chrono::seconds(o.boot_timeout_s);
    c.qemu = o.qemu;
    c.online = lab::parse_online_mode(o.online);
    lab::validate(c);
    (void)lab::classify_kernel_spec(c.kernel);  // reject nonsense before any download
    return c;
}

lab::Guest::Progress stderr_progress() {
    return [](const std::string& line) { std::cerr << "memhp: " << line << std::endl; };
}

}  // namespace memhp::cli
