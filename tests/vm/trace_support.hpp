#pragma once
// `memhp trace --json` run inside a lab guest around some work, for the VM
// tests of the probe paths.
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "vm_support.hpp"

namespace memhp::vmtest {

using nlohmann::json;

// Starts `memhp trace --json` in the guest (with `env` entries such as
// MEMHP_PROBES=fentry), waits until it has attached, runs `body`, stops it
// and returns the operations it reported; the full output goes to `raw`.
template <typename Fn>
std::vector<json> traced_with(lab::Guest& g, const std::vector<std::string>& env, Fn&& body, std::string* raw) {
    auto& agent = g.agent();
    const std::string memhp = (lab::default_agent_path().parent_path() / "memhp").string();
    const std::string out = "/tmp/trace-" + std::to_string(::getpid()) + ".out";
    std::vector<std::string> argv{"/usr/bin/env"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.insert(argv.end(), {memhp, "trace", "--json"});
    const int pid = agent.spawn(argv, out);
    std::string text;
    for (int i = 0; i < 600 && text.find("memhp: attached") == std::string::npos; ++i) {
        if (auto code = agent.wait(pid, std::chrono::milliseconds(100)))
            throw Error("memhp trace exited early (" + std::to_string(*code) + "):\n" + agent.try_read(out).value_or(""));
        text = agent.try_read(out).value_or("");
    }
    if (text.find("memhp: attached") == std::string::npos) throw Error("memhp trace never attached:\n" + text);
    body();
    agent.signal(pid, SIGINT);
    auto code = agent.wait(pid, std::chrono::seconds(60));
    text = agent.read(out);
    if (raw) *raw = text;
    if (!code || *code != 0) throw Error("memhp trace did not exit cleanly:\n" + text);
    std::vector<json> ops;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '{') ops.push_back(json::parse(line));
    return ops;
}

inline std::vector<json> of_phase(const std::vector<json>& ops, const std::string& phase) {
    std::vector<json> out;
    for (const auto& o : ops)
        if (o["phase"] == phase) out.push_back(o);
    return out;
}

}  // namespace memhp::vmtest
