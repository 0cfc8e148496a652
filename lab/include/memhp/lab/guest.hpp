// SPDX-License-Identifier: Apache-2.0
#pragma once
// A lab guest: QEMU (TCG by default) booting a Debian kernel with our
// initramfs, what it runs of the host shared read-only over 9p (shares.hpp),
// a QMP socket and the agent's virtio-serial port. The Guest object owns QEMU: whatever happens
// (error, timeout, Ctrl-C), QEMU is killed and its sockets removed when the
// object goes away.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "memhp/error.hpp"
#include "memhp/files.hpp"
#include "memhp/lab/agent_client.hpp"
#include "memhp/lab/kernel_cache.hpp"
#include "memhp/lab/machine.hpp"
#include "memhp/lab/qmp.hpp"
#include "memhp/lab/shares.hpp"
#include "memhp/process.hpp"

namespace memhp::lab {

// A guest TCP port reachable from the host at 127.0.0.1:host_port.
struct PortForward {
    std::uint16_t host_port = 0;
    std::uint16_t guest_port = 0;
};

// Who onlines hot-added memory. Auto: the kernel, as on real hosts (Debian's
// 6.12 and 7.2 default to auto_online_blocks=online; a kernel whose policy is
// offline gets online_movable). Manual: the lab writes each block's state
// itself after setting auto_online_blocks=offline.
enum class OnlineMode { Manual, Auto };
[[nodiscard]] OnlineMode parse_online_mode(const std::string& text);  // "auto" | "manual"; UsageError otherwise
[[nodiscard]] const char* online_mode_name(OnlineMode m);

// A virtio-mem-pci device (its memory backend sized `max_size`, reserve=off
// so the host commits only what is plugged), starting with nothing plugged.
struct VirtioMemConfig {
    int node = 1;
    std::uint64_t max_size = std::uint64_t{4} << 30;
    std::uint64_t block_size = 0;  // the device's block-size property; 0: QEMU's default
};

// QEMU's id of the i-th virtio-mem device.
[[nodiscard]] std::string virtio_mem_id(std::size_t i);

struct GuestConfig {
    std::string kernel = "6.1";            // see classify_kernel_spec()
    std::optional<bool> memmap_on_memory;  // memory_hotplug.memmap_on_memory=; unset: kernel default
    std::vector<std::string> append;       // extra kernel command-line words
    std::vector<std::uint64_t> node_mem{std::uint64_t{1} << 30, 0};  // bytes per NUMA node; 0 = memoryless
    unsigned cpus = 2;
    unsigned slots = 16;                     // DIMM slots
    std::uint64_t maxmem = 0;                // 0: boot memory + 16 GiB
    std::string accel = "tcg";               // "tcg" or "kvm"
    std::chrono::seconds boot_timeout{180};  // until the agent says hello
    std::chrono::seconds kvm_watchdog{30};   // KVM: silent console this long = hung
    std::string qemu = "qemu-system-x86_64";
    std::filesystem::path agent;              // default: memhp-agent beside the running binary
    OnlineMode online = OnlineMode::Manual;   // who onlines added blocks (memhp lab/ab default: auto)
    std::vector<VirtioMemConfig> virtio_mem;  // devices "vmem0", "vmem1", ...
    // Non-empty: a virtio-net NIC on QEMU user networking (restrict=on: no
    // way out) with these forwards, and the guest brings up lo and eth0
    // (10.0.2.15/24). Empty: no network at all, as before.
    std::vector<PortForward> tcp_forwards;
};

// Throws UsageError for an impossible configuration.
void validate(const GuestConfig& cfg);

// QEMU's command line for `cfg` (pure; unit-tested).
[[nodiscard]] std::vector<std::string> qemu_command(const GuestConfig& cfg, const std::filesystem::path& vmlinuz,
                                                    const std::filesystem::path& initrd,
                                                    const std::filesystem::path& run_dir,
                                                    const std::filesystem::path& agent,
                                                    const std::filesystem::path& cwd, const SharePlan& shares);
[[nodiscard]] std::string kernel_cmdline(const GuestConfig& cfg, const std::filesystem::path& agent,
                                         const std::filesystem::path& cwd);

// The guest failed: QEMU died, the kernel panicked, boot timed out. The
// message carries the last console lines.
class GuestError : public Error {
public:
    using Error::Error;
};

class Guest final : public Machine {
public:
    // Fetches the kernel and initramfs if needed, starts QEMU and waits for
    // the agent. Throws GuestError (with console tail) or Error.
    static std::unique_ptr<Guest> boot(const GuestConfig& cfg, const Progress& progress = {});
    // boot() in two steps, so several guests boot at once: start() fetches
    // the kernel and starts QEMU (call it from the thread that will own the
    // guest: QEMU dies with that thread), wait_ready() waits for the agent.
    static std::unique_ptr<Guest> start(const GuestConfig& cfg, const Progress& progress = {});
    void wait_ready() override;
    ~Guest() override;

    [[nodiscard]] AgentClient& agent() override { return agent_; }
    [[nodiscard]] QmpClient& qmp() override { return qmp_; }
    [[nodiscard]] const KernelImage& kernel() const override { return kernel_; }
    [[nodiscard]] const GuestConfig& config() const override { return cfg_; }
    [[nodiscard]] const std::filesystem::path& run_dir() const { return run_dir_.path(); }
    [[nodiscard]] int qemu_pid() const override { return qemu_.pid(); }
    [[nodiscard]] std::string qemu_cmdline() const override;
    [[nodiscard]] double boot_seconds() const override { return boot_seconds_; }
    [[nodiscard]] double guest_uptime_at_ready() const { return uptime_at_ready_; }
    [[nodiscard]] std::string release() const override { return release_; }
    [[nodiscard]] const std::string& online_policy() const override { return online_policy_; }
    [[nodiscard]] std::string console_tail(std::size_t n = 20) const override;
    // Throws GuestError if QEMU is gone; Interrupted on Ctrl-C. Used as the
    // tick of every wait.
    void check_alive() override;
    [[nodiscard]] bool alive() override;
    // Kills QEMU now (tests of "guest killed mid-run").
    void kill_qemu();
    // Asks QEMU to quit, then makes sure it is gone.
    void shutdown() override;

private:
    Guest() = default;
    [[nodiscard]] std::string failure_report(const std::string& headline) const;
    GuestConfig cfg_;
    KernelImage kernel_;
    TempDir run_dir_{"memhp-lab"};
    ChildProcess qemu_;
    QmpClient qmp_;
    AgentClient agent_;
    Progress progress_;
    std::chrono::steady_clock::time_point started_;
    std::vector<std::string> qemu_argv_;
    bool rebooted_ = false;  // wait_ready() boots again once after a boot-time oops or stall
    void wait_ready_once();
    double boot_seconds_ = 0;
    double uptime_at_ready_ = 0;
    std::string release_;
    std::string online_policy_;
};

// Why a boot that did not reach the agent is worth one more try: the
// emulation's fault, not the configuration's. Oops: the kernel oopsed
// ("Fatal exception") and QEMU is gone. Stall: the kernel reports an RCU
// stall ("detected stall", "kthread starved", "timer wakeup didn't happen")
// before the agent said hello, which under TCG on a loaded host means the
// boot hangs for good (seen in CI: a 6.1 guest stuck after loading 9p,
// reporting the stall every 21 s until the boot timeout). None: report it.
enum class BootRetry { None, Oops, Stall };
[[nodiscard]] BootRetry transient_boot_failure(std::string_view console, bool qemu_running);

// memhp-agent beside the running executable (build/bin), or $MEMHP_AGENT.
[[nodiscard]] std::filesystem::path default_agent_path();

}  // namespace memhp::lab
