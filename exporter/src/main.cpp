// SPDX-License-Identifier: Apache-2.0
// memhp-exporter: memory hot(un)plug metrics for Prometheus, from memhp's
// BPF probes, served at /metrics.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
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
        "errno, and the host's memory blocks. Needs root, or CAP_BPF, CAP_PERFMON and CAP_SYSLOG, and a kernel with "
        "BTF; drops every capability once the probes are attached, before the HTTP server starts. Under systemd "
        "(Type=notify) it reports readiness and feeds the watchdog. Stops cleanly on SIGINT or SIGTERM. Metrics: "
        "docs/metrics.md."};
    app.set_version_flag("--version", std::string("memhp-exporter ") + memhp::kVersion);
    ExporterOptions opts;
    bool list = false;
    app.add_option("--listen", opts.listen,
                   "ADDR:PORT to serve /metrics on: a numeric IPv4 address, or [IPv6] where the HTTP server (civetweb) "
                   "was built with IPv6 (Debian 12's is not: there an IPv6 address is refused up front); port 0 "
                   "picks a free one. Loopback by default: expose it further only on purpose")
        ->default_val(kDefaultListen)
        ->capture_default_str();
    app.add_flag("--list-metrics", list, "print the metric table (Markdown, docs/metrics.md) and exit");
    app.add_flag("-v,--verbose", opts.verbose, "print libbpf's debug messages");
    app.add_flag("--keep-capabilities", opts.keep_capabilities,
                 "debugging only: keep the process's capabilities after the probes are attached (by default every "
                 "capability is dropped before the HTTP server starts)");
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
        opts.probes = memhp::collector::probe_options_from([](const char* name) { return std::getenv(name); });
        return run_exporter(opts);
    } catch (const memhp::UsageError& e) {
        std::cerr << "memhp-exporter: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "memhp-exporter: error: " << e.what() << "\n";
        return 1;
    }
}
