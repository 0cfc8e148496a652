// SPDX-License-Identifier: Apache-2.0
#pragma once
// A probe backend for collector::Session tests that attaches nothing: each
// poll() hands the session the ring-buffer records (real memhp_event bytes)
// scripted for that call and returns the scripted result. Header only: the
// TSan build compiles exporter_test.cpp on its own.
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "memhp/collector/session.hpp"
#include "memhp_event.h"

namespace memhp::test {

class FakeBackend : public collector::ProbeBackend {
public:
    struct Step {
        std::vector<std::vector<std::uint8_t>> records;
        std::optional<int> result;  // what poll() returns (default: how many records)
    };
    FakeBackend(collector::RecordHandler handler, collector::ProbeOptions options)
        : options(options), handler_(std::move(handler)) {}

    // The next poll() (counting the ones scripted before) delivers `events`.
    void script(const std::vector<memhp_event>& events, std::optional<int> result = std::nullopt) {
        Step s;
        for (const auto& ev : events) {
            std::vector<std::uint8_t> raw(sizeof ev);
            std::memcpy(raw.data(), &ev, sizeof ev);
            s.records.push_back(std::move(raw));
        }
        s.result = result;
        steps_.push_back(std::move(s));
    }

    int poll(int timeout_ms) override {
        timeouts.push_back(timeout_ms);
        if (steps_.empty()) return 0;
        Step s = std::move(steps_.front());
        steps_.pop_front();
        for (const auto& r : s.records) handler_(std::span<const std::uint8_t>(r));
        return s.result.value_or(static_cast<int>(s.records.size()));
    }
    [[nodiscard]] const std::vector<collector::AttachStatus>& attach_report() const override { return report; }
    [[nodiscard]] collector::OpHealth op_health() const override { return health; }
    [[nodiscard]] std::uint64_t dropped_events() const override { return dropped; }
    [[nodiscard]] std::uint64_t interrupt_page_events() const override { return interrupt_pages; }
    [[nodiscard]] std::vector<std::pair<std::string, int>> program_fds() const override { return {}; }
    [[nodiscard]] std::string path() const override { return "fake"; }
    [[nodiscard]] std::string populate_timing() const override { return "not timed"; }
    [[nodiscard]] const std::vector<std::pair<std::string, double>>& startup_phases() const override { return phases_; }
    [[nodiscard]] const collector::KernelFeatures& kernel_features() const override { return features_; }
    [[nodiscard]] bool populate_direct() const override { return false; }

    collector::ProbeOptions options;  // as the session passed them
    std::vector<int> timeouts;        // of every poll, in order
    std::vector<collector::AttachStatus> report;
    collector::OpHealth health;
    std::uint64_t dropped = 0;
    std::uint64_t interrupt_pages = 0;

private:
    collector::RecordHandler handler_;
    std::deque<Step> steps_;
    std::vector<std::pair<std::string, double>> phases_;
    collector::KernelFeatures features_;
};

// Session options for a FakeBackend (stored in *made once built), no
// preflight, sysfs read under `root` and, when given, `nodes` instead of
// root's memory blocks.
inline collector::SessionOptions fake_session_options(FakeBackend** made,
                                                      std::unique_ptr<collector::NodeResolver> nodes = nullptr,
                                                      std::filesystem::path root = "/nonexistent") {
    collector::SessionOptions o;
    o.root = std::move(root);
    o.nodes = std::move(nodes);
    o.preflight = {};
    o.make_backend = [made](collector::RecordHandler h,
                            const collector::ProbeOptions& p) -> std::unique_ptr<collector::ProbeBackend> {
        auto b = std::make_unique<FakeBackend>(std::move(h), p);
        if (made) *made = b.get();
        return b;
    };
    return o;
}

}  // namespace memhp::test
