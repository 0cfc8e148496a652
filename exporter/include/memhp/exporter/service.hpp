// SPDX-License-Identifier: Apache-2.0
#pragma once
// The exporter's side of systemd's Type=notify protocol (sd_notify from
// libsystemd): READY=1 once /metrics answers, WATCHDOG=1 from the poll loop
// at half of WatchdogSec, STOPPING=1 on the way out. Outside systemd
// ($NOTIFY_SOCKET unset) every call does nothing.
#include <chrono>
#include <cstdint>
#include <string>

namespace memhp::exporter {

class ServiceManager {
public:
    ServiceManager();
    void ready(const std::string& status);
    // Cheap when called often: pings only when half the watchdog period has passed.
    void watchdog();
    void stopping();
    [[nodiscard]] bool watchdog_enabled() const { return watchdog_usec_ != 0; }

private:
    std::uint64_t watchdog_usec_ = 0;
    std::chrono::steady_clock::time_point last_ping_{};
};

}  // namespace memhp::exporter
