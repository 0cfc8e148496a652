// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/qmp.hpp"

namespace memhp::lab {

QmpClient::QmpClient(LineChannel channel, LineChannel::Tick tick)
    : channel_(std::move(channel)), tick_(std::move(tick)) {
    channel_.set_max_line(kQmpMaxLine);
}

std::optional<std::string> QmpClient::next_line(LineChannel::Clock::time_point deadline) {
    try {
        return channel_.read_line(deadline, tick_);
    } catch (const LineTooLong& e) {
        throw Error(std::string("QMP: QEMU sent more than a message may hold: ") + e.what());
    }
}

void QmpClient::keep_event(json msg) {
    // Nobody waits for most events; an event storm must not grow memory.
    if (events_.size() >= kMaxPendingEvents) {
        events_.pop_front();
        ++dropped_events_;
    }
    events_.push_back(std::move(msg));
}

json QmpClient::read_message(LineChannel::Clock::time_point deadline, const std::string& waiting_for) {
    while (true) {
        auto line = next_line(deadline);
        if (!line) throw Error("QMP: no answer from QEMU within the timeout while waiting for " + waiting_for);
        if (line->empty()) continue;
        json msg = json::parse(*line, nullptr, false);
        if (msg.is_discarded() || !msg.is_object())
            throw Error("QMP: malformed message from QEMU: " + line->substr(0, 200));
        return msg;
    }
}

json QmpClient::handshake(Ms timeout) {
    const auto deadline = LineChannel::Clock::now() + timeout;
    json greeting = read_message(deadline, "the greeting");
    if (!greeting.contains("QMP")) throw Error("QMP: expected a greeting, got " + greeting.dump().substr(0, 200));
    execute("qmp_capabilities", nullptr, timeout);
    return greeting["QMP"];
}

json QmpClient::execute(const std::string& command, const json& arguments, Ms timeout) {
    const auto deadline = LineChannel::Clock::now() + timeout;
    const std::string id = "memhp-" + std::to_string(next_id_++);
    json req{{"execute", command}, {"id", id}};
    if (!arguments.is_null()) req["arguments"] = arguments;
    channel_.write_line(req.dump(), deadline, tick_);
    while (true) {
        json msg = read_message(deadline, "the answer to " + command);
        if (msg.contains("event")) {
            keep_event(std::move(msg));
            continue;
        }
        if (msg.value("id", json()) != json(id)) continue;  // a stale answer
        if (msg.contains("error")) {
            const auto& e = msg["error"];
            throw QmpError(command, e.value("class", "GenericError"), e.value("desc", "unknown error"));
        }
        if (msg.contains("return")) return msg["return"];
        throw Error("QMP: unexpected answer to " + command + ": " + msg.dump().substr(0, 200));
    }
}

std::optional<json> QmpClient::wait_event(const std::string& name, const std::function<bool(const json&)>& match,
                                          Ms timeout) {
    auto matches = [&](const json& ev) {
        return ev.value("event", "") == name && (!match || match(ev.value("data", json::object())));
    };
    for (auto it = events_.begin(); it != events_.end(); ++it) {
        if (matches(*it)) {
            json ev = *it;
            events_.erase(it);
            return ev;
        }
    }
    const auto deadline = LineChannel::Clock::now() + timeout;
    while (LineChannel::Clock::now() < deadline) {
        auto line = next_line(deadline);
        if (!line) break;
        if (line->empty()) continue;
        json msg = json::parse(*line, nullptr, false);
        if (msg.is_discarded() || !msg.is_object() || !msg.contains("event")) continue;
        if (matches(msg)) return msg;
        keep_event(std::move(msg));
    }
    return std::nullopt;
}

}  // namespace memhp::lab
