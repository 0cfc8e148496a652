#include "memhp/ab/guest_trace.hpp"

#include <signal.h>

#include <sstream>
#include <thread>

#include "memhp/stop.hpp"

namespace memhp::ab {

using Clock = std::chrono::steady_clock;

GuestTrace::GuestTrace(lab::Guest& guest, Ms attach_timeout) : guest_(guest) {
    auto& agent = guest_.agent();
    const std::string memhp = (lab::default_agent_path().parent_path() / "memhp").string();
    out_ = "/tmp/memhp-trace." + std::to_string(::getpid()) + ".ndjson";
    const auto t0 = Clock::now();
    pid_ = agent.spawn({memhp, "trace", "--json"}, out_);
    std::string text;
    while (true) {
        text = agent.try_read(out_).value_or("");
        if (auto at = text.find("memhp: attached"); at != std::string::npos) {
            attach_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
            attach_line_ = text.substr(at, text.find('\n', at) - at);
            return;
        }
        if (auto code = agent.wait(pid_, Ms(100))) {
            pid_ = -1;
            throw Error("memhp trace exited in the guest before attaching (exit " + std::to_string(*code) + "):\n" +
                        agent.try_read(out_).value_or(""));
        }
        if (Clock::now() - t0 > attach_timeout)
            throw Error("memhp trace did not attach its probes in the guest within " +
                        std::to_string(attach_timeout.count() / 1000) + " s:\n" + text);
        check_stop();
    }
}

GuestTrace::~GuestTrace() {
    if (pid_ < 0) return;
    try {
        guest_.agent().signal(pid_, SIGKILL);
    } catch (...) {  // the guest may be gone; nothing to tidy then
    }
}

std::vector<nlohmann::json> GuestTrace::parse_all(const std::string& text) const {
    std::vector<nlohmann::json> ops;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] != '{') continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded()) ops.push_back(std::move(j));
    }
    return ops;
}

std::vector<nlohmann::json> GuestTrace::take(const std::function<bool(const std::vector<nlohmann::json>&)>& ready,
                                             Ms timeout) {
    const auto t0 = Clock::now();
    std::vector<nlohmann::json> all;
    while (true) {
        all = parse_all(guest_.agent().try_read(out_).value_or(""));
        std::vector<nlohmann::json> fresh(all.begin() + static_cast<std::ptrdiff_t>(std::min(taken_, all.size())), all.end());
        if (ready(fresh) || Clock::now() - t0 > timeout) {
            taken_ = all.size();
            return fresh;
        }
        check_stop();
        std::this_thread::sleep_for(Ms(50));
    }
}

std::string GuestTrace::stop(Ms timeout) {
    auto& agent = guest_.agent();
    agent.signal(pid_, SIGINT);
    auto code = agent.wait(pid_, timeout);
    const std::string text = agent.try_read(out_).value_or("");
    if (!code) throw Error("memhp trace did not stop in the guest within " + std::to_string(timeout.count() / 1000) + " s");
    pid_ = -1;
    if (*code != 0) throw Error("memhp trace exited with " + std::to_string(*code) + " in the guest:\n" + text);
    return text;
}

std::size_t count_phase(const std::vector<nlohmann::json>& ops, const std::string& phase) {
    std::size_t n = 0;
    for (const auto& o : ops)
        if (o.value("phase", "") == phase) ++n;
    return n;
}

}  // namespace memhp::ab
