// SPDX-License-Identifier: Apache-2.0
#pragma once
// A tracer running inside a lab guest (`memhp trace --json`, or bpftrace for
// the peer check): started through the agent, its NDJSON records read back
// as the run goes, stopped with SIGINT.
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "memhp/lab/guest.hpp"

namespace memhp::lab {

// What to run: the command line, the text it prints once every probe is
// attached (its line becomes attach_line()), and a name for messages. A
// tracer that says nothing once attached (bpftrace 0.17 prints its
// "Attaching N probes..." before it attaches, and no line after) is
// attached when it holds `bpf_links` BPF links as well.
struct TracerCommand {
    std::string name;
    std::vector<std::string> argv;
    std::string attached_marker;
    int bpf_links = 0;
};

// `memhp trace --json ARGS...` (the memhp beside memhp-agent), under
// `env NAME=value...` when `env` is given.
[[nodiscard]] TracerCommand memhp_trace_command(const std::vector<std::string>& args = {},
                                                const std::vector<std::string>& env = {});

class GuestTrace {
public:
    using Ms = std::chrono::milliseconds;
    // Starts the tracer and waits until it reports its probes attached,
    // telling `waiting` every 30 s while it does. Throws Error with the
    // tracer's output if it exits or never attaches.
    GuestTrace(lab::Machine& guest, TracerCommand command, Ms attach_timeout,
               const std::function<void(const std::string&)>& waiting = {});
    // memhp trace, as memhp_trace_command(args, env).
    explicit GuestTrace(lab::Machine& guest, const std::vector<std::string>& args = {},
                        const std::vector<std::string>& env = {}, Ms attach_timeout = Ms(60000))
        : GuestTrace(guest, memhp_trace_command(args, env), attach_timeout) {}
    ~GuestTrace();
    GuestTrace(const GuestTrace&) = delete;
    GuestTrace& operator=(const GuestTrace&) = delete;

    // Host-side time from spawn to "attached", and the tracer's own line.
    [[nodiscard]] double attach_seconds() const { return attach_s_; }
    [[nodiscard]] const std::string& attach_line() const { return attach_line_; }

    // Operation records that arrived since the last call, waiting until
    // `ready(those records)` holds or `timeout` passes (events reach the
    // tracer asynchronously, through a ring buffer it polls). Each poll
    // reads only what the tracer wrote since the last one.
    std::vector<nlohmann::json> take(const std::function<bool(const std::vector<nlohmann::json>&)>& ready,
                                     Ms timeout = Ms(10000));
    // Stops the tracer (SIGINT) and returns its whole output; throws if it
    // does not exit cleanly.
    std::string stop(Ms timeout = Ms(60000));

private:
    lab::Machine& guest_;
    std::string name_;
    std::string out_;
    // Reads the tracer's new complete lines into text_ and ops_.
    void catch_up();

    int pid_ = -1;
    std::string text_;                 // the output so far, whole lines
    std::uint64_t read_to_ = 0;        // bytes of it read
    std::vector<nlohmann::json> ops_;  // its operation records
    std::size_t taken_ = 0;            // of those, handed out by take()
    double attach_s_ = 0;
    std::string attach_line_;
};

// The trace NDJSON schemas parse_ops() accepts: the collector's
// kTraceJsonOldestSchema..kTraceJsonSchema (a unit test keeps them equal; the
// lab does not link the collector). Schema 2 records lack the nesting fields
// and their duration_ns is inclusive; readers default the missing fields.
inline constexpr int kTraceSchemaOldest = 2;
inline constexpr int kTraceSchemaNewest = 4;

// The operation records in a tracer's output: every complete line that
// starts with '{' (a last line still being written is left for later).
// Throws Error on a complete line that is not JSON, on a record of a
// schema outside kTraceSchemaOldest..kTraceSchemaNewest, or on a record
// whose known fields do not have their documented types (counts and times
// non-negative integers, nid/ret integers, phase/mode/caller strings,
// memmap/node_check objects of counts): readers may take them with
// value<std::uint64_t>() and friends. The summary record (schema 4,
// `"record":"summary"`) is not an operation: parse_ops leaves it out, and
// refuses a record of any other kind.
[[nodiscard]] std::vector<nlohmann::json> parse_ops(const std::string& text);

// What a finished `memhp trace --json` lost, from its summary record (the
// last one wins). nullopt when the output has none (a schema-3 tracer, or
// one that did not end cleanly). Throws Error as parse_ops does.
struct TraceSummary {
    std::uint64_t events = 0, dropped_events = 0, decode_errors = 0, orphan_page_events = 0, stale_ops = 0,
                  untraced_ops = 0;
    [[nodiscard]] bool lost() const {
        return dropped_events || decode_errors || orphan_page_events || stale_ops || untraced_ops;
    }
};
[[nodiscard]] std::optional<TraceSummary> parse_trace_summary(const std::string& text);

// Counts the records of one phase.
[[nodiscard]] std::size_t count_phase(const std::vector<nlohmann::json>& ops, const std::string& phase);

}  // namespace memhp::lab
