// SPDX-License-Identifier: Apache-2.0
#pragma once
// The guest side of the agent protocol (memhp/lab/agent_protocol.hpp), apart
// from memhp-agent's main() so the unit tier can serve it over a socketpair
// and a fuzz target can feed parse_request() without running anything.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "memhp/line_channel.hpp"

namespace memhp::agent {

// One request, checked: every field the op needs is there with its type and
// range (timeouts 0..kMaxTimeoutMs, pids > 0, signals 0..64, at most
// kMaxPaths paths, non-empty argv).
struct Request {
    nlohmann::json id;  // echoed back; null when the line had none
    std::string op;
    std::vector<std::string> argv;     // exec, spawn
    std::vector<std::string> paths;    // read
    std::string path;                  // write, listdir, read_from
    unsigned long long offset = 0;     // read_from
    std::string data;                  // write
    std::string output = "/dev/null";  // spawn
    long long timeout_ms = 60000;      // exec, wait
    int pid = 0;                       // wait, signal
    int signal = 15;                   // signal (SIGTERM)
};
inline constexpr long long kMaxTimeoutMs = 24LL * 3600 * 1000;
inline constexpr std::size_t kMaxPaths = 4096;

// Parses and checks one request line; throws Error saying what is wrong
// (not JSON, not an object, unknown op, missing or mistyped field). A bad
// request is answered, never fatal: see handle_line().
[[nodiscard]] Request parse_request(std::string_view line);

// The reply line (without "\n") to one request line: the op's result, or
// {"ok":false,"error":..} for a bad request or a failed op. A reply that
// would exceed kAgentMaxResponse becomes an error reply.
[[nodiscard]] std::string handle_line(std::string_view line);

// Serves requests on `ch` until the host closes it (ChannelClosed) or an I/O
// error: a line too long (LineTooLong) or a bad request gets an error reply
// and the loop goes on. Says hello first.
void serve(LineChannel& ch);

// The working directory commands run in (--cwd).
void set_cwd(std::string cwd);

}  // namespace memhp::agent
