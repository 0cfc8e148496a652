// SPDX-License-Identifier: Apache-2.0
#pragma once
// The guest's initramfs: busybox-static, the virtio/9p/overlay modules of the
// chosen kernel (decompressed, in dependency order) and the memhp init script.
// Built on demand and cached, keyed by everything that goes into it.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "memhp/lab/kernel_cache.hpp"

namespace memhp::lab {

// Modules the guest needs for the virtio-serial agent port and the 9p share.
// Built-in ones (modules.builtin) are skipped.
inline const std::vector<std::string> kGuestModules = {"virtio_pci", "virtio_console", "9pnet_virtio", "9p", "overlay"};
// Loaded only when the guest is asked for networking (memhp.net=1).
inline const std::vector<std::string> kGuestNetModules = {"virtio_net"};

// Module name as the kernel sees it: basename without .ko[.xz|.zst|.gz], '-' -> '_'.
[[nodiscard]] std::string module_name(std::string_view path);

// Load order (paths relative to the modules dir, dependencies first, each
// once) for `wanted`, from the text of modules.dep and modules.builtin.
// Throws Error naming a module that is neither a module nor built in.
[[nodiscard]] std::vector<std::string> resolve_module_load_order(std::string_view modules_dep,
                                                                 std::string_view modules_builtin,
                                                                 const std::vector<std::string>& wanted);

// The cached initramfs for `kernel` (built if missing). `busybox` is the
// static busybox binary to include.
[[nodiscard]] std::filesystem::path ensure_initramfs(const KernelImage& kernel, const std::filesystem::path& cache_root,
                                                     const std::filesystem::path& busybox = "/bin/busybox");

}  // namespace memhp::lab
