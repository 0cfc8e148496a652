// SPDX-License-Identifier: Apache-2.0
#pragma once
// memhp-exporter's main loop: check the listen address, attach the probes,
// drop every capability, then start the HTTP server and serve /metrics until
// SIGINT/SIGTERM, telling systemd (Type=notify) when it is ready and feeding
// its watchdog. Shared by the memhp-exporter binary.
#include <cstdint>
#include <string>
#include <vector>

#include "memhp/collector/probe_backend.hpp"

namespace memhp::exporter {

// Not in the 9100-9999 range, which Prometheus' default port allocation list
// has fully handed out; see README "Run it on a real host".
inline constexpr std::uint16_t kDefaultPort = 10466;
inline const std::string kDefaultListen = "127.0.0.1:" + std::to_string(kDefaultPort);

struct ListenAddress {
    std::string host;  // "127.0.0.1", "::1"
    std::uint16_t port = 0;
    bool ipv6 = false;
    [[nodiscard]] std::string civetweb() const;  // "127.0.0.1:10466", "[::1]:10466"
    [[nodiscard]] std::string url(std::uint16_t actual_port) const;
};

// "ADDR:PORT" with a numeric IPv4 address or a bracketed IPv6 one; port 0
// picks a free port. Throws UsageError saying what is wrong.
[[nodiscard]] ListenAddress parse_listen(const std::string& text);

// Whether the HTTP server (civetweb, under prometheus-cpp) was built with
// IPv6 (USE_IPV6; mg_check_feature(8)). Debian 12's civetweb 1.15 is not:
// there "[::1]:PORT" never starts, so run_exporter refuses it up front.
[[nodiscard]] bool http_server_has_ipv6();
// Throws UsageError when `a` is IPv6 and the server cannot listen there.
void check_listen_supported(const ListenAddress& a);

// The HTTP server's settings: keep-alive (Prometheus reuses its connection;
// closing after every scrape costs a handshake each time) and 4 worker threads,
// so a couple of scrapers and a person with curl never wait on each other.
[[nodiscard]] std::vector<std::string> http_options(const ListenAddress& a);

struct ExporterOptions {
    std::string listen = kDefaultListen;
    bool verbose = false;
    bool keep_capabilities = false;  // debugging only: skip the drop after attach
    collector::ProbeOptions probes;
};

// Runs until a stop signal; returns the exit code. Throws Error/BpfError with
// a remedy when it cannot listen or attach.
int run_exporter(const ExporterOptions& opts);

}  // namespace memhp::exporter
