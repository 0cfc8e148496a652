// SPDX-License-Identifier: Apache-2.0
// collector::Session: sysfs, the backend, the aggregator and its sinks, and
// the poll-and-drain loop that `memhp trace` and memhp-exporter share.
#include "memhp/collector/session.hpp"

#include <cerrno>
#include <chrono>

namespace memhp::collector {

void CompositeSink::add(OperationSink* sink) {
    if (sink) sinks_.push_back(sink);
}

void CompositeSink::on_operation(const Operation& op) {
    for (auto* s : sinks_) s->on_operation(op);
}

namespace {

// The preflight, then the node map: the caller's, else root's sysfs one.
std::unique_ptr<NodeResolver> preflight_and_nodes(SessionOptions& o) {
    if (o.preflight) o.preflight();
    if (o.nodes) return std::move(o.nodes);
    return std::make_unique<SysfsNodeResolver>(o.root);
}

std::uint64_t block_size_of(const NodeResolver& nodes) {
    const auto* sysfs = dynamic_cast<const SysfsNodeResolver*>(&nodes);
    return sysfs ? sysfs->block_size_bytes() : AggregatorConfig{}.block_size_bytes;
}

}  // namespace

Session::Session(SessionOptions options)
    : nodes_(preflight_and_nodes(options)),
      config_(read_sysfs_config(options.root, block_size_of(*nodes_))),
      agg_(*nodes_, config_.aggregator) {
    for (auto* s : options.sinks) sinks_.add(s);
    agg_.add_sink(&sinks_);
    const auto t0 = std::chrono::steady_clock::now();
    backend_ = options.make_backend([this](std::span<const std::uint8_t> raw) { consume(raw); }, options.probes);
    attach_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

Session::~Session() { backend_.reset(); }

void Session::add_sink(OperationSink* sink) {
    std::lock_guard lock(mu_);
    sinks_.add(sink);
}

int Session::run(const RunOptions& options) {
    int err = 0;
    while (!(options.stop && options.stop())) {
        const int r = backend_->poll(options.poll_timeout_ms);
        if (options.each) options.each();
        if (r < 0 && r != -EINTR) {
            err = r;
            break;
        }
    }
    backend_->poll(0);  // drain what is left
    return err;
}

void Session::consume(std::span<const std::uint8_t> raw) {
    std::lock_guard lock(mu_);
    agg_.consume(raw);
}

void Session::consume(const memhp_event& ev) {
    std::lock_guard lock(mu_);
    agg_.consume(ev);
}

Stats Session::stats() const {
    std::lock_guard lock(mu_);
    return agg_.stats();
}

std::uint64_t Session::events() const {
    std::lock_guard lock(mu_);
    return agg_.stats().events;
}

}  // namespace memhp::collector
