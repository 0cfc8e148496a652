// SPDX-License-Identifier: Apache-2.0
#pragma once
// dax/kmem in a lab guest: a pmem range carved from guest RAM on the kernel
// command line (memmap=SIZE!START), made a devdax namespace with Debian's
// ndctl, then handed to kmem as system RAM (add_memory_driver_managed, like
// virtio-mem) and given back. Where the kernel has the dax device's
// memmap_on_memory attribute (Linux >= 6.8), kmem can put the memmap on the
// device itself.
//
// Use: configure_dax_guest(cfg, size) before Guest::boot, then a DaxLab on
// the booted guest: add() / remove() as often as wanted.
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memhp/lab/guest.hpp"
#include "memhp/lab/memory.hpp"

namespace memhp::lab {

// Where the pmem range goes in guest-physical memory, and the guest layout
// that puts it there (pure; unit-tested).
struct DaxLayout {
    std::uint64_t dax_bytes = 0;   // what kmem adds: whole 128 MiB blocks
    std::uint64_t pmem_bytes = 0;  // the memmap= range: dax_bytes + one block for the namespace's info block and memmap
    std::uint64_t pmem_start = 0;  // its guest-physical start
    std::vector<std::uint64_t> node_mem;  // the guest's boot memory per node (node 1 is the pmem range)
    std::string memmap_arg;               // "memmap=1152M!4G"
};
[[nodiscard]] DaxLayout dax_layout(std::uint64_t dax_bytes);

// Gives `cfg` the layout of dax_layout(): node 0 2 GiB of RAM, node 1 the
// pmem range and nothing else. Throws UsageError for a size that is not a
// positive multiple of 128M up to 64G.
void configure_dax_guest(GuestConfig& cfg, std::uint64_t dax_bytes);

// The modules kmem needs on top of the kernel's built-in dax core, in the
// order to load them: e820 pmem (nd_e820), its namespace driver (nd_pmem),
// the devdax personality (dax_pmem; dax_pmem_core too on 5.10), the devdax
// driver (device_dax) and kmem. Module names, as in /sys/module.
[[nodiscard]] const std::vector<std::string>& dax_modules();

// From the text of a modules.dep, the files (relative to the modules
// directory) to insmod for `names`, dependencies first, each once. Throws
// Error naming the module when one is not in the file (the kernel lacks
// it). Pure; unit-tested.
[[nodiscard]] std::vector<std::string> module_load_order(std::string_view modules_dep,
                                                         const std::vector<std::string>& names);

// What `ndctl create-namespace ... -m devdax` printed: the namespace and its
// dax device. Untrusted text: at most 64 KiB, names checked against the
// shapes "namespaceN.M" and "daxN.M" (they become sysfs paths). Throws
// Error saying what is wrong.
struct NdctlNamespace {
    std::string dev;      // namespace0.0
    std::string mode;     // devdax
    std::string chardev;  // dax0.0
};
[[nodiscard]] NdctlNamespace parse_ndctl_namespace(std::string_view json_text);
// "dax0.0", "namespace1.0": true when `name` is prefix, digits, '.', digits.
[[nodiscard]] bool valid_nd_name(std::string_view name, std::string_view prefix);

// The memory blocks kmem adds for a dax range: the whole blocks inside
// [start, start + size) (kmem aligns the range to the block size).
[[nodiscard]] std::vector<int> kmem_blocks(std::uint64_t start, std::uint64_t size, std::uint64_t block_size);

// One kmem add as the host saw it.
struct KmemAdd {
    std::vector<int> blocks;
    std::optional<bool> memmap_on_memory;  // the attribute as written; unset: left alone / absent
    double add_s = 0;                      // the write to kmem's new_id: add_memory_driver_managed runs inside it
    double online_s = 0;                   // the lab's online writes, or the wait for the kernel's
    std::string online_by = "lab";
};
struct KmemRemove {
    double offline_s = 0;
    double remove_s = 0;  // the unbind from kmem: remove_memory runs inside it
};

class DaxLab {
public:
    using Ms = std::chrono::milliseconds;
    // Loads the modules from the guest kernel's own modules (insmod from the
    // cache, which the guest sees over 9p), finds the e820 pmem region and
    // makes its namespace devdax with ndctl. Throws Error/GuestError saying
    // what is missing (modules, ndctl, the region).
    explicit DaxLab(Machine& guest, Ms timeout = Ms(120000));

    [[nodiscard]] const std::string& device() const { return dev_; }
    [[nodiscard]] const std::string& namespace_name() const { return ns_; }
    [[nodiscard]] std::uint64_t start() const { return start_; }
    [[nodiscard]] std::uint64_t size() const { return size_; }
    [[nodiscard]] int target_node() const { return target_node_; }
    // What ndctl printed (validated by parse_ndctl_namespace).
    [[nodiscard]] const std::string& ndctl_json() const { return ndctl_json_; }
    // The dax device has a memmap_on_memory attribute (Linux >= 6.8).
    [[nodiscard]] bool has_memmap_on_memory_attr();
    // The blocks kmem will add.
    [[nodiscard]] std::vector<int> blocks() const;

    // Sets the attribute when `memmap_on_memory` is given (UsageError when
    // the kernel has none), moves the device from device_dax to kmem and
    // onlines its blocks into `zone` unless the kernel did (waits for that).
    KmemAdd add(std::optional<bool> memmap_on_memory, Zone zone = Zone::Movable);
    // Offlines the blocks, unbinds the device from kmem (the memory goes)
    // and gives it back to device_dax. Throws AgentError/Error with the errno
    // and the console tail when the kernel keeps the memory.
    KmemRemove remove();

private:
    Machine& guest_;
    Ms timeout_;
    std::uint64_t block_size_ = 0;
    std::string ns_, dev_, ndctl_json_;
    std::uint64_t start_ = 0, size_ = 0;
    int target_node_ = -1;
};

[[nodiscard]] nlohmann::json to_json(const KmemAdd& a);
[[nodiscard]] nlohmann::json to_json(const KmemRemove& r);

}  // namespace memhp::lab
