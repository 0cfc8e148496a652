// SPDX-License-Identifier: Apache-2.0
#pragma once
// A QMP (QEMU Machine Protocol) client: greeting + qmp_capabilities
// handshake, synchronous commands matched by id, asynchronous events queued
// and waited for by name.
#include <chrono>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "memhp/error.hpp"
#include "memhp/line_channel.hpp"

namespace memhp::lab {

using nlohmann::json;

// QEMU answered a command with {"error":{"class":..,"desc":..}}.
class QmpError : public Error {
public:
    QmpError(const std::string& command, std::string error_class, const std::string& desc)
        : Error("QMP " + command + " failed: " + desc + " (" + error_class + ")"),
          error_class_(std::move(error_class)) {}
    [[nodiscard]] const std::string& error_class() const { return error_class_; }

private:
    std::string error_class_;
};

class QmpClient {
public:
    using Ms = std::chrono::milliseconds;
    QmpClient() = default;
    // Takes a connected stream; `tick` runs while waiting (may throw to abort).
    explicit QmpClient(LineChannel channel, LineChannel::Tick tick = {});

    // Reads the greeting and negotiates capabilities. Returns the greeting's "QMP" object.
    json handshake(Ms timeout = Ms(10000));
    // Runs a command; returns its "return" value; throws QmpError or Error (timeout).
    json execute(const std::string& command, const json& arguments = nullptr, Ms timeout = Ms(30000));
    // Waits for an event named `name` whose data satisfies `match` (events
    // received earlier, while a command ran, count too). nullopt on timeout.
    std::optional<json> wait_event(const std::string& name, const std::function<bool(const json&)>& match, Ms timeout);
    // The events seen so far and not consumed by wait_event: the newest
    // kMaxPendingEvents; dropped_events() counts the older ones let go.
    [[nodiscard]] const std::deque<json>& pending_events() const { return events_; }
    [[nodiscard]] std::size_t dropped_events() const { return dropped_events_; }
    // QEMU's own QMP parser takes messages of up to 64 MiB; what it sends us
    // (greeting, query-memory-devices, events) is a few KiB. A longer line is
    // an Error, not unbounded memory.
    static constexpr std::size_t kQmpMaxLine = std::size_t{1} << 20;
    static constexpr std::size_t kMaxPendingEvents = 4096;
    [[nodiscard]] bool connected() const { return channel_.is_open(); }

private:
    json read_message(LineChannel::Clock::time_point deadline, const std::string& waiting_for);
    std::optional<std::string> next_line(LineChannel::Clock::time_point deadline);
    void keep_event(json msg);
    LineChannel channel_;
    LineChannel::Tick tick_;
    std::deque<json> events_;
    std::size_t dropped_events_ = 0;
    long next_id_ = 1;
};

}  // namespace memhp::lab
