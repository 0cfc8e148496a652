// SPDX-License-Identifier: Apache-2.0
#pragma once
// One collector session, whichever program runs it (`memhp trace`,
// memhp-exporter): the node map and the config read from sysfs, the probe
// backend, the Aggregator and the sinks its operations go to, and the
// poll-and-drain loop. The programs only wire options, sinks and output.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "memhp/collector/aggregator.hpp"
#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/host_config.hpp"
#include "memhp/collector/probe_backend.hpp"

namespace memhp::collector {

// Fans each completed operation out to every sink added, in order.
class CompositeSink : public OperationSink {
public:
    void add(OperationSink* sink);
    void on_operation(const Operation& op) override;

private:
    std::vector<OperationSink*> sinks_;
};

struct SessionOptions {
    ProbeOptions probes;
    std::filesystem::path root = "/";   // sysfs (memory blocks, memmap_on_memory) is read under it
    std::vector<OperationSink*> sinks;  // they must outlive the session
    // Builds the backend; tests hand in a fake.
    ProbeBackendFactory make_backend = make_probe_backend;
    // Runs first, before sysfs is read: check_bpf_prerequisites, whose
    // remedies beat a sysfs error. Tests clear it.
    std::function<void()> preflight = [] { check_bpf_prerequisites(); };
    // Tests: a node map instead of root's sysfs one (the block size is then
    // AggregatorConfig's default).
    std::unique_ptr<NodeResolver> nodes;
};

struct RunOptions {
    std::function<bool()> stop;  // checked before every poll
    std::function<void()> each;  // after every poll (a watchdog)
    int poll_timeout_ms = 100;
};

class Session {
public:
    // Reads sysfs and attaches the backend. Throws what they throw
    // (BpfError with a remedy, Error for sysfs).
    explicit Session(SessionOptions options);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void add_sink(OperationSink* sink);  // before run()
    // Polls until `stop` says so or a poll fails (a negative errno other
    // than -EINTR), then drains what is left. Returns 0, or the failing -errno.
    int run(const RunOptions& options);
    // One record, as the backend hands it over (public for tests and replays).
    void consume(std::span<const std::uint8_t> raw);
    void consume(const memhp_event& ev);

    // A copy of the aggregates, taken under the lock consume() holds: safe
    // from another thread (the exporter's scrape).
    [[nodiscard]] Stats stats() const;
    [[nodiscard]] std::uint64_t events() const;
    [[nodiscard]] const SysfsConfig& config() const { return config_; }
    [[nodiscard]] const ProbeBackend& backend() const { return *backend_; }
    // How long building the backend took (load, attach).
    [[nodiscard]] double attach_ms() const { return attach_ms_; }

private:
    std::unique_ptr<NodeResolver> nodes_;
    SysfsConfig config_;
    CompositeSink sinks_;
    mutable std::mutex mu_;  // guards agg_
    Aggregator agg_;
    double attach_ms_ = 0;
    std::unique_ptr<ProbeBackend> backend_;
};

}  // namespace memhp::collector
