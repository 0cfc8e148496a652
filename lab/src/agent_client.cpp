// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/agent_client.hpp"

#include "memhp/lab/agent_protocol.hpp"

#include <climits>

namespace memhp::lab {

using Clock = LineChannel::Clock;

AgentClient::AgentClient(LineChannel channel, LineChannel::Tick tick)
    : channel_(std::move(channel)), tick_(std::move(tick)) {
    channel_.set_max_line(kAgentMaxResponse);
}

std::optional<std::string> AgentClient::next_line(Clock::time_point deadline) {
    try {
        return channel_.read_line(deadline, tick_);
    } catch (const LineTooLong& e) {
        throw Error(std::string("the guest agent sent a reply larger than the protocol allows: ") + e.what());
    }
}

namespace {

// Typed reads of a reply's fields: whatever the guest sends, a field of the
// wrong type or range is an Error naming it, never nlohmann's type_error or
// a float converted out of range (the fuzz target found spawn's "pid").
[[noreturn]] void bad_field(const std::string& op, const char* key, const char* want, const json& v) {
    throw Error("the guest agent's reply to '" + op + "' has \"" + key + "\" " + v.dump().substr(0, 40) + ", not " +
                want + ": is it a memhp-agent of this build?");
}

const json* find(const json& r, const char* key) {
    const auto it = r.find(key);
    return it == r.end() ? nullptr : &*it;
}

int int_field(const json& r, const char* key, int fallback, const std::string& op) {
    const json* v = find(r, key);
    if (!v) return fallback;
    if (v->is_number_unsigned() && v->get<unsigned long long>() <= static_cast<unsigned long long>(INT_MAX))
        return static_cast<int>(v->get<unsigned long long>());
    if (v->is_number_integer() && !v->is_number_unsigned() && v->get<long long>() >= INT_MIN &&
        v->get<long long>() <= INT_MAX)
        return static_cast<int>(v->get<long long>());
    bad_field(op, key, "an int", *v);
}

bool bool_field(const json& r, const char* key, bool fallback, const std::string& op) {
    const json* v = find(r, key);
    if (!v) return fallback;
    if (!v->is_boolean()) bad_field(op, key, "true or false", *v);
    return v->get<bool>();
}

std::string string_field(const json& r, const char* key, const std::string& fallback, const std::string& op) {
    const json* v = find(r, key);
    if (!v) return fallback;
    if (!v->is_string()) bad_field(op, key, "a string", *v);
    return v->get<std::string>();
}

double number_field(const json& r, const char* key, double fallback, const std::string& op) {
    const json* v = find(r, key);
    if (!v) return fallback;
    if (!v->is_number()) bad_field(op, key, "a number", *v);
    return v->get<double>();
}

}  // namespace

json AgentClient::wait_hello(Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
        auto line = next_line(deadline);
        if (!line) throw Error("the guest agent did not say hello in time");
        json msg = json::parse(*line, nullptr, false);
        if (!msg.is_object()) continue;
        const json* event = find(msg, "event");
        if (!event || *event != "hello") continue;
        const int proto = int_field(msg, "proto", 0, "hello");
        if (proto != kAgentProtocol)
            throw Error("guest agent speaks protocol " + std::to_string(proto) + ", expected " +
                        std::to_string(kAgentProtocol) + ": rebuild memhp");
        return msg;
    }
}

json AgentClient::request(json req, Ms timeout) {
    const auto deadline = Clock::now() + timeout + Ms(5000);  // the agent enforces `timeout` itself
    const long id = next_id_++;
    req["id"] = id;
    const std::string op = req.value("op", "");
    channel_.write_line(req.dump(-1, ' ', false, json::error_handler_t::replace), deadline, tick_);
    while (true) {
        auto line = next_line(deadline);
        if (!line)
            throw Error("the guest agent did not answer '" + op + "' within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 5) + " s");
        json resp = json::parse(*line, nullptr, false);
        if (!resp.is_object()) continue;
        const json* rid = find(resp, "id");
        if (!rid || *rid != json(id)) continue;
        if (!bool_field(resp, "ok", false, op))
            throw AgentError("guest: " + string_field(resp, "error", "request failed", op),
                             int_field(resp, "errno", 0, op));
        return resp;
    }
}

ExecResult AgentClient::exec(const std::vector<std::string>& argv, Ms timeout) {
    const auto r = request({{"op", "exec"}, {"argv", argv}, {"timeout_ms", timeout.count()}}, timeout);
    return {int_field(r, "exit_code", -1, "exec"), string_field(r, "stdout", "", "exec"),
            string_field(r, "stderr", "", "exec"), bool_field(r, "timed_out", false, "exec")};
}

std::string AgentClient::exec_checked(const std::vector<std::string>& argv, Ms timeout) {
    auto r = exec(argv, timeout);
    if (!r.ok()) {
        std::string cmd;
        for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
        throw AgentError("guest command '" + cmd + "' " +
                             (r.timed_out ? "timed out" : "failed with exit code " + std::to_string(r.exit_code)) +
                             (r.err.empty() ? "" : ": " + r.err),
                         0);
    }
    return r.out;
}

std::map<std::string, std::optional<std::string>> AgentClient::read(const std::vector<std::string>& paths) {
    const auto r = request({{"op", "read"}, {"paths", paths}}, Ms(30000));
    std::map<std::string, std::optional<std::string>> out;
    const json* files = find(r, "files");
    if (!files) return out;
    if (!files->is_object()) bad_field("read", "files", "an object", *files);
    for (const auto& [k, v] : files->items()) {
        if (!v.is_string() && !v.is_null()) bad_field("read", "files", "an object of strings and nulls", v);
        out[k] = v.is_string() ? std::optional(v.get<std::string>()) : std::nullopt;
    }
    return out;
}

std::optional<std::string> AgentClient::try_read(const std::string& path) { return read(std::vector{path})[path]; }

AgentClient::Chunk AgentClient::read_from(const std::string& path, std::uint64_t offset) {
    const auto r = request({{"op", "read_from"}, {"path", path}, {"offset", offset}}, Ms(30000));
    auto u64 = [&](const char* key) {
        const json* v = find(r, key);
        if (!v || !v->is_number_unsigned()) bad_field("read_from", key, "a byte offset", v ? *v : json());
        return v->get<std::uint64_t>();
    };
    Chunk c;
    c.data = string_field(r, "data", "", "read_from");
    c.next = u64("next");
    c.size = u64("size");
    if (c.next != offset + c.data.size()) bad_field("read_from", "next", "the offset after the data", *find(r, "next"));
    return c;
}

std::string AgentClient::read(const std::string& path) {
    auto v = try_read(path);
    if (!v) throw AgentError("guest: cannot read " + path, 0);
    return *v;
}

void AgentClient::write(const std::string& path, const std::string& data) {
    request({{"op", "write"}, {"path", path}, {"data", data}}, Ms(120000));
}

std::vector<std::string> AgentClient::listdir(const std::string& path) {
    const auto r = request({{"op", "listdir"}, {"path", path}}, Ms(30000));
    std::vector<std::string> out;
    const json* entries = find(r, "entries");
    if (!entries) return out;
    if (!entries->is_array()) bad_field("listdir", "entries", "an array of strings", *entries);
    for (const auto& e : *entries) {
        if (!e.is_string()) bad_field("listdir", "entries", "an array of strings", e);
        out.push_back(e.get<std::string>());
    }
    return out;
}

int AgentClient::spawn(const std::vector<std::string>& argv, const std::string& output) {
    const auto r = request({{"op", "spawn"}, {"argv", argv}, {"output", output}}, Ms(30000));
    const int pid = int_field(r, "pid", 0, "spawn");
    if (pid <= 0) bad_field("spawn", "pid", "a pid above 0", r.value("pid", json()));
    return pid;
}

std::optional<int> AgentClient::wait(int pid, Ms timeout) {
    const auto r = request({{"op", "wait"}, {"pid", pid}, {"timeout_ms", timeout.count()}}, timeout);
    if (!bool_field(r, "exited", false, "wait")) return std::nullopt;
    return int_field(r, "exit_code", -1, "wait");
}

void AgentClient::signal(int pid, int sig) { request({{"op", "signal"}, {"pid", pid}, {"signal", sig}}, Ms(10000)); }

double AgentClient::ping() { return number_field(request({{"op", "ping"}}, Ms(10000)), "uptime_s", 0.0, "ping"); }

}  // namespace memhp::lab
