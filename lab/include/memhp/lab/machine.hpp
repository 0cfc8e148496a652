// SPDX-License-Identifier: Apache-2.0
#pragma once
// A lab guest as the code that drives it sees it: its QMP and agent
// clients, its console, the configuration it booted with and what the boot
// found out. lab::Guest (guest.hpp) is the real one, QEMU under it; the
// unit tests serve a modelled guest over socketpairs (tests/unit/fake_guest.hpp),
// so MemoryLab, GuestTrace and memhp ab run without a VM.
#include <functional>
#include <string>

#include "memhp/lab/agent_client.hpp"
#include "memhp/lab/kernel_cache.hpp"
#include "memhp/lab/qmp.hpp"

namespace memhp::lab {

struct GuestConfig;

class Machine {
public:
    using Progress = std::function<void(const std::string&)>;
    Machine() = default;
    virtual ~Machine() = default;
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;

    [[nodiscard]] virtual AgentClient& agent() = 0;
    [[nodiscard]] virtual QmpClient& qmp() = 0;
    [[nodiscard]] virtual const GuestConfig& config() const = 0;
    [[nodiscard]] virtual const KernelImage& kernel() const = 0;
    // Waits until the guest is ready (the agent said hello); throws GuestError.
    virtual void wait_ready() = 0;
    [[nodiscard]] virtual std::string release() const = 0;
    // auto_online_blocks as the lab left it after boot ("offline", "online", "online_movable", ...).
    [[nodiscard]] virtual const std::string& online_policy() const = 0;
    // True when the kernel onlines hot-added blocks itself.
    [[nodiscard]] bool kernel_onlines() const {
        const auto& p = online_policy();
        return !p.empty() && p != "offline";
    }
    [[nodiscard]] virtual double boot_seconds() const = 0;
    [[nodiscard]] virtual int qemu_pid() const = 0;
    // The QEMU command line the guest runs under, for the records.
    [[nodiscard]] virtual std::string qemu_cmdline() const = 0;
    // The last `n` lines the guest printed on its serial console.
    [[nodiscard]] virtual std::string console_tail(std::size_t n = 20) const = 0;
    // Throws GuestError if the guest is gone; Interrupted on Ctrl-C.
    virtual void check_alive() = 0;
    [[nodiscard]] virtual bool alive() = 0;
    // Stops the guest and makes sure it is gone.
    virtual void shutdown() = 0;
};

}  // namespace memhp::lab
