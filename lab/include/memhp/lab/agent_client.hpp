// SPDX-License-Identifier: Apache-2.0
#pragma once
// Host side of the guest agent protocol (memhp/lab/agent_protocol.hpp).
#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "memhp/error.hpp"
#include "memhp/line_channel.hpp"

namespace memhp::lab {

using nlohmann::json;

// The agent could not do what was asked; errno() is the guest's errno, if any.
class AgentError : public Error {
public:
    AgentError(const std::string& what, int err) : Error(what), errno_(err) {}
    [[nodiscard]] int guest_errno() const { return errno_; }

private:
    int errno_;
};

struct ExecResult {
    int exit_code = -1;
    std::string out;
    std::string err;
    bool timed_out = false;
    [[nodiscard]] bool ok() const { return exit_code == 0 && !timed_out; }
};

class AgentClient {
public:
    using Ms = std::chrono::milliseconds;
    AgentClient() = default;
    explicit AgentClient(LineChannel channel, LineChannel::Tick tick = {});

    void set_tick(LineChannel::Tick tick) { tick_ = std::move(tick); }
    // Waits for the agent's hello; returns it. Throws Error on timeout.
    json wait_hello(Ms timeout);

    ExecResult exec(const std::vector<std::string>& argv, Ms timeout = Ms(120000));
    // exec() that throws AgentError with stderr when the command fails.
    std::string exec_checked(const std::vector<std::string>& argv, Ms timeout = Ms(120000));
    ExecResult sh(const std::string& script, Ms timeout = Ms(120000)) {
        return exec({"/bin/sh", "-c", script}, timeout);
    }

    // Reads files; missing/unreadable ones map to nullopt.
    std::map<std::string, std::optional<std::string>> read(const std::vector<std::string>& paths);
    // Reads one file; throws AgentError if it cannot be read.
    std::string read(const std::string& path);
    std::optional<std::string> try_read(const std::string& path);
    // Whole lines of `path` from byte `offset` on, kAgentReadChunk at most;
    // `next` is where to go on, `size` the file's size when read. Throws
    // AgentError (with errno) if the file cannot be read.
    struct Chunk {
        std::string data;
        std::uint64_t next = 0;
        std::uint64_t size = 0;
    };
    Chunk read_from(const std::string& path, std::uint64_t offset);
    // write(2)s `data` to an existing file (sysfs); throws AgentError with errno.
    void write(const std::string& path, const std::string& data);
    std::vector<std::string> listdir(const std::string& path);

    // Starts a background process with stdout+stderr to `output`; returns its pid.
    int spawn(const std::vector<std::string>& argv, const std::string& output);
    // Exit code once the process ended within `timeout`, else nullopt.
    std::optional<int> wait(int pid, Ms timeout);
    void signal(int pid, int sig);
    double ping();

private:
    json request(json req, Ms timeout);
    std::optional<std::string> next_line(LineChannel::Clock::time_point deadline);
    LineChannel channel_;
    LineChannel::Tick tick_;
    long next_id_ = 1;
};

}  // namespace memhp::lab
