// SPDX-License-Identifier: Apache-2.0
#include "memhp/exporter/service.hpp"

#include <systemd/sd-daemon.h>

namespace memhp::exporter {

ServiceManager::ServiceManager() {
    std::uint64_t usec = 0;
    // > 0 when systemd set WATCHDOG_USEC for this very process.
    if (sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = usec;
}

void ServiceManager::ready(const std::string& status) {
    sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
    last_ping_ = std::chrono::steady_clock::now();
}

void ServiceManager::watchdog() {
    if (!watchdog_usec_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ping_ < std::chrono::microseconds(watchdog_usec_ / 2)) return;
    sd_notify(0, "WATCHDOG=1");
    last_ping_ = now;
}

void ServiceManager::stopping() { sd_notify(0, "STOPPING=1"); }

}  // namespace memhp::exporter
