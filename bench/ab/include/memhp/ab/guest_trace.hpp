#pragma once
// `memhp trace --json` running inside a lab guest: started through the agent,
// its NDJSON read back as the run goes, stopped with SIGINT.
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "memhp/lab/guest.hpp"

namespace memhp::ab {

class GuestTrace {
public:
    using Ms = std::chrono::milliseconds;
    // Starts the tracer and waits until it reports its probes attached.
    // Throws Error with the tracer's output if it exits or never attaches.
    explicit GuestTrace(lab::Guest& guest, Ms attach_timeout = Ms(60000));
    ~GuestTrace();
    GuestTrace(const GuestTrace&) = delete;
    GuestTrace& operator=(const GuestTrace&) = delete;

    // Host-side time from spawn to "attached", and the tracer's own line.
    [[nodiscard]] double attach_seconds() const { return attach_s_; }
    [[nodiscard]] const std::string& attach_line() const { return attach_line_; }

    // Operation records that arrived since the last call, waiting until
    // `ready(all records so far)` holds or `timeout` passes (events reach
    // the tracer asynchronously, through a ring buffer it polls).
    std::vector<nlohmann::json> take(const std::function<bool(const std::vector<nlohmann::json>&)>& ready,
                                     Ms timeout = Ms(10000));
    // Stops the tracer (SIGINT) and returns its whole output; throws if it
    // does not exit cleanly.
    std::string stop(Ms timeout = Ms(60000));

private:
    [[nodiscard]] std::vector<nlohmann::json> parse_all(const std::string& text) const;
    lab::Guest& guest_;
    std::string out_;
    int pid_ = -1;
    std::size_t taken_ = 0;
    double attach_s_ = 0;
    std::string attach_line_;
};

// Counts the records of one phase.
[[nodiscard]] std::size_t count_phase(const std::vector<nlohmann::json>& ops, const std::string& phase);

}  // namespace memhp::ab
