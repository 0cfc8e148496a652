// SPDX-License-Identifier: Apache-2.0
#include "memhp/lab/guest_trace.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <iterator>
#include <string_view>
#include <thread>

#include "memhp/stop.hpp"

namespace memhp::lab {

using Clock = std::chrono::steady_clock;

namespace {

// How many BPF links process `pid` of the guest holds.
int bpf_links(lab::AgentClient& agent, int pid) {
    const auto r = agent.sh("ls -l /proc/" + std::to_string(pid) + "/fd 2>/dev/null | grep -c 'anon_inode:bpf_link'");
    try {
        return std::stoi(r.out);
    } catch (const std::exception&) {
        return 0;
    }
}

}  // namespace

TracerCommand memhp_trace_command(const std::vector<std::string>& args, const std::vector<std::string>& env) {
    TracerCommand cmd{"memhp trace", {}, "memhp: attached"};
    if (!env.empty()) {
        cmd.argv.push_back("/usr/bin/env");
        cmd.argv.insert(cmd.argv.end(), env.begin(), env.end());
    }
    cmd.argv.insert(cmd.argv.end(), {(lab::default_agent_path().parent_path() / "memhp").string(), "trace", "--json"});
    cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
    return cmd;
}

GuestTrace::GuestTrace(lab::Machine& guest, TracerCommand command, Ms attach_timeout,
                       const std::function<void(const std::string&)>& waiting)
    : guest_(guest), name_(std::move(command.name)) {
    static std::atomic<int> serial{0};  // one output file per tracer, several may run at once
    auto& agent = guest_.agent();
    out_ = "/tmp/memhp-trace." + std::to_string(::getpid()) + "." + std::to_string(++serial) + ".ndjson";
    const auto t0 = Clock::now();
    pid_ = agent.spawn(command.argv, out_);
    std::string text;
    auto next_word = t0 + std::chrono::seconds(30);
    while (true) {
        if (waiting && Clock::now() >= next_word) {
            waiting(name_ + " still attaching, " +
                    std::to_string(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - t0).count()) +
                    " s so far");
            next_word += std::chrono::seconds(30);
        }
        text = agent.try_read(out_).value_or("");
        if (auto at = text.find(command.attached_marker);
            at != std::string::npos && (command.bpf_links == 0 || bpf_links(agent, pid_) >= command.bpf_links)) {
            attach_s_ = std::chrono::duration<double>(Clock::now() - t0).count();
            attach_line_ = text.substr(at, text.find('\n', at) - at);
            if (command.bpf_links)
                attach_line_ = name_ + ": " + std::to_string(command.bpf_links) + " BPF links attached";
            return;
        }
        if (auto code = agent.wait(pid_, Ms(100))) {
            pid_ = -1;
            throw Error(name_ + " exited in the guest before attaching (exit " + std::to_string(*code) + "):\n" +
                        agent.try_read(out_).value_or(""));
        }
        if (Clock::now() - t0 > attach_timeout)
            throw Error(name_ + " did not attach its probes in the guest within " +
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

void GuestTrace::catch_up() {
    auto& agent = guest_.agent();
    while (true) {
        auto chunk = agent.read_from(out_, read_to_);
        if (chunk.data.empty()) return;
        read_to_ = chunk.next;
        auto ops = parse_ops(chunk.data);
        ops_.insert(ops_.end(), std::make_move_iterator(ops.begin()), std::make_move_iterator(ops.end()));
        text_ += chunk.data;
        if (read_to_ >= chunk.size) return;
    }
}

std::vector<nlohmann::json> GuestTrace::take(const std::function<bool(const std::vector<nlohmann::json>&)>& ready,
                                             Ms timeout) {
    const auto t0 = Clock::now();
    while (true) {
        catch_up();
        std::vector<nlohmann::json> fresh(ops_.begin() + static_cast<std::ptrdiff_t>(taken_), ops_.end());
        if (ready(fresh) || Clock::now() - t0 > timeout) {
            taken_ = ops_.size();
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
    if (!code)
        throw Error(name_ + " did not stop in the guest within " + std::to_string(timeout.count() / 1000) + " s");
    pid_ = -1;
    catch_up();
    if (*code != 0) {
        constexpr std::size_t kTail = 4096;
        const std::string tail = text_.size() > kTail ? "…" + text_.substr(text_.size() - kTail) : text_;
        throw Error(name_ + " exited with " + std::to_string(*code) + " in the guest:\n" + tail);
    }
    return text_;
}

}  // namespace memhp::lab
