#include "memhp/lab/agent_client.hpp"

#include "memhp/lab/agent_protocol.hpp"

namespace memhp::lab {

using Clock = LineChannel::Clock;

AgentClient::AgentClient(LineChannel channel, LineChannel::Tick tick) : channel_(std::move(channel)), tick_(std::move(tick)) {
    channel_.set_max_line(kAgentMaxResponse);
}

std::optional<std::string> AgentClient::next_line(Clock::time_point deadline) {
    try {
        return channel_.read_line(deadline, tick_);
    } catch (const LineTooLong& e) {
        throw Error(std::string("the guest agent sent a reply larger than the protocol allows: ") + e.what());
    }
}

json AgentClient::wait_hello(Ms timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
        auto line = next_line(deadline);
        if (!line) throw Error("the guest agent did not say hello in time");
        json msg = json::parse(*line, nullptr, false);
        if (!msg.is_object() || msg.value("event", "") != "hello") continue;
        if (msg.value("proto", 0) != kAgentProtocol)
            throw Error("guest agent speaks protocol " + std::to_string(msg.value("proto", 0)) + ", expected " +
                        std::to_string(kAgentProtocol) + ": rebuild memhp");
        return msg;
    }
}

json AgentClient::request(json req, Ms timeout) {
    const auto deadline = Clock::now() + timeout + Ms(5000);  // the agent enforces `timeout` itself
    const long id = next_id_++;
    req["id"] = id;
    channel_.write_line(req.dump(-1, ' ', false, json::error_handler_t::replace), deadline, tick_);
    while (true) {
        auto line = next_line(deadline);
        if (!line)
            throw Error("the guest agent did not answer '" + req.value("op", "") + "' within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count() + 5) + " s");
        json resp = json::parse(*line, nullptr, false);
        if (!resp.is_object() || resp.value("id", json()) != json(id)) continue;
        if (!resp.value("ok", false))
            throw AgentError("guest: " + resp.value("error", std::string("request failed")), resp.value("errno", 0));
        return resp;
    }
}

ExecResult AgentClient::exec(const std::vector<std::string>& argv, Ms timeout) {
    auto r = request({{"op", "exec"}, {"argv", argv}, {"timeout_ms", timeout.count()}}, timeout);
    return {r.value("exit_code", -1), r.value("stdout", ""), r.value("stderr", ""), r.value("timed_out", false)};
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
    auto r = request({{"op", "read"}, {"paths", paths}}, Ms(30000));
    std::map<std::string, std::optional<std::string>> out;
    for (const auto& [k, v] : r["files"].items()) out[k] = v.is_string() ? std::optional(v.get<std::string>()) : std::nullopt;
    return out;
}

std::optional<std::string> AgentClient::try_read(const std::string& path) { return read(std::vector{path})[path]; }

std::string AgentClient::read(const std::string& path) {
    auto v = try_read(path);
    if (!v) throw AgentError("guest: cannot read " + path, 0);
    return *v;
}

void AgentClient::write(const std::string& path, const std::string& data) {
    request({{"op", "write"}, {"path", path}, {"data", data}}, Ms(120000));
}

std::vector<std::string> AgentClient::listdir(const std::string& path) {
    return request({{"op", "listdir"}, {"path", path}}, Ms(30000))["entries"].get<std::vector<std::string>>();
}

int AgentClient::spawn(const std::vector<std::string>& argv, const std::string& output) {
    return request({{"op", "spawn"}, {"argv", argv}, {"output", output}}, Ms(30000))["pid"].get<int>();
}

std::optional<int> AgentClient::wait(int pid, Ms timeout) {
    auto r = request({{"op", "wait"}, {"pid", pid}, {"timeout_ms", timeout.count()}}, timeout);
    if (!r.value("exited", false)) return std::nullopt;
    return r.value("exit_code", -1);
}

void AgentClient::signal(int pid, int sig) { request({{"op", "signal"}, {"pid", pid}, {"signal", sig}}, Ms(10000)); }

double AgentClient::ping() { return request({{"op", "ping"}}, Ms(10000)).value("uptime_s", 0.0); }

}  // namespace memhp::lab
