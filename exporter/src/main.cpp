// memhp-exporter: memory hot(un)plug metrics for Prometheus, from memhp's
// BPF probes, served at /metrics.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "memhp/error.hpp"
#include "memhp/exporter/daemon.hpp"
#include "memhp/exporter/metrics.hpp"
#include "memhp/stop.hpp"
#include "memhp/version.hpp"

int main(int argc, char** argv) {
    using namespace memhp::exporter;
    CLI::App app{
        "memhp-exporter: Prometheus metrics for Linux memory hot(un)plug. Attaches memhp's BPF probes and serves, at "
        "/metrics, how long each add/populate/online/offline/remove took, where each hot-added memmap came from "
        "(altmap or page allocator) and on which NUMA node it sits, the free memory hot-add consumed, failures by "
        "errno, and the host's memory blocks. Needs root, or CAP_BPF and CAP_PERFMON, and a kernel with BTF. Stops "
        "cleanly on SIGINT or SIGTERM. Metrics: docs/metrics.md."};
    app.set_version_flag("--version", std::string("memhp-exporter ") + memhp::kVersion);
    ExporterOptions opts;
    bool list = false;
    app.add_option("--listen", opts.listen,
                   "ADDR:PORT to serve /metrics on: a numeric IPv4 address or [IPv6]; port 0 picks a free one. "
                   "Loopback by default: expose it further only on purpose")
        ->default_val(kDefaultListen)
        ->capture_default_str();
    app.add_flag("--list-metrics", list, "print the metric table (Markdown, docs/metrics.md) and exit");
    app.add_flag("-v,--verbose", opts.verbose, "print libbpf's debug messages");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);  // prints help, version or the error
        return code == 0 ? 0 : 2;
    }
    if (list) {
        std::fputs(metrics_markdown().c_str(), stdout);
        return 0;
    }
    memhp::install_stop_handlers();
    memhp::ignore_sigpipe();
    try {
        return run_exporter(opts);
    } catch (const memhp::UsageError& e) {
        std::cerr << "memhp-exporter: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "memhp-exporter: error: " << e.what() << "\n";
        return 1;
    }
}
