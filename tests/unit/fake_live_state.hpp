// SPDX-License-Identifier: Apache-2.0
#pragma once
// The exporter's LiveState over a collector session on a FakeBackend: tests
// feed it records directly (Session::consume) and scrape it like the daemon.
#include <cstdint>
#include <memory>

#include "fake_backend.hpp"
#include "memhp/exporter/live_state.hpp"

namespace memhp::test {

class FakeLiveState : public exporter::SnapshotSource {
public:
    explicit FakeLiveState(std::unique_ptr<collector::NodeResolver> nodes)
        : session_(fake_session_options(nullptr, std::move(nodes))), live_(session_) {}
    void consume(const memhp_event& ev) { session_.consume(ev); }
    [[nodiscard]] exporter::ProbeSnapshot snapshot(bool with_run_stats) const override {
        return live_.snapshot(with_run_stats);
    }
    [[nodiscard]] std::uint64_t events() const { return live_.events(); }

private:
    collector::Session session_;
    exporter::LiveState live_;
};

}  // namespace memhp::test
