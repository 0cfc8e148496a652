// SPDX-License-Identifier: Apache-2.0
#include "memhp/exporter/daemon.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <civetweb.h>
#include <prometheus/exposer.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>

#include "memhp/collector/bpf_support.hpp"
#include "memhp/collector/privileges.hpp"
#include "memhp/collector/session.hpp"
#include "memhp/error.hpp"
#include "memhp/exporter/live_state.hpp"
#include "memhp/exporter/metrics.hpp"
#include "memhp/exporter/service.hpp"
#include "memhp/files.hpp"
#include "memhp/stop.hpp"
#include "memhp/version.hpp"

namespace memhp::exporter {

std::string ListenAddress::civetweb() const { return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port); }

std::string ListenAddress::url(std::uint16_t actual_port) const {
    return "http://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(actual_port) + "/metrics";
}

ListenAddress parse_listen(const std::string& text) {
    const std::string example = " (e.g. 127.0.0.1:" + std::to_string(kDefaultPort) +
                                ", 0.0.0.0:" + std::to_string(kDefaultPort) +
                                " or [::1]:" + std::to_string(kDefaultPort) + ")";
    ListenAddress a;
    std::string port_text;
    if (text.starts_with("[")) {
        const auto close = text.find("]:");
        if (close == std::string::npos) throw UsageError("--listen '" + text + "': expected [IPV6]:PORT" + example);
        a.host = text.substr(1, close - 1);
        a.ipv6 = true;
        port_text = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos || colon == 0)
            throw UsageError("--listen '" + text + "': expected ADDR:PORT" + example);
        a.host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
    }
    unsigned char buf[sizeof(in6_addr)];
    if (::inet_pton(a.ipv6 ? AF_INET6 : AF_INET, a.host.c_str(), buf) != 1)
        throw UsageError("--listen '" + text + "': '" + a.host + "' is not a numeric " + (a.ipv6 ? "IPv6" : "IPv4") +
                         " address" + example);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
        throw UsageError("--listen '" + text + "': the port must be a number from 0 to 65535" + example);
    a.port = static_cast<std::uint16_t>(port);
    return a;
}

bool http_server_has_ipv6() { return mg_check_feature(8) != 0; }

void check_listen_supported(const ListenAddress& a) {
    if (a.ipv6 && !http_server_has_ipv6())
        throw UsageError("--listen '" + a.civetweb() +
                         "': the HTTP server memhp-exporter uses (civetweb, as this system built it) has no IPv6 "
                         "support (built without USE_IPV6), so it cannot listen on an IPv6 address; listen on IPv4 "
                         "(e.g. 127.0.0.1:" +
                         std::to_string(kDefaultPort) + " or 0.0.0.0:" + std::to_string(kDefaultPort) +
                         ") and, if IPv6 scrapers need it, put a proxy in front");
}

// Scrape clients are outside input. civetweb gives each connection a worker
// thread for its whole life, so a client that trickles its request holds one
// for up to request_timeout_ms (a bound on the whole request, headers
// included; civetweb's default is 30 s). A scrape request is one short line
// plus headers: 5 s and 16 KiB of headers are plenty, and 16 workers keep
// Prometheus served while a handful of slow clients time out (issue 13).
std::vector<std::string> http_options(const ListenAddress& a) {
    return {"listening_ports",  a.civetweb(), "num_threads",       "16",  "request_timeout_ms",    "5000",
            "max_request_size", "16384",      "enable_keep_alive", "yes", "keep_alive_timeout_ms", "5000"};
}

namespace {

// civetweb says only "null context"; binding the address ourselves tells why.
// nullopt when the address can be bound.
std::optional<std::string> bind_problem(const ListenAddress& a) {
    const int fd = ::socket(a.ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::string(std::strerror(errno));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int r;
    if (a.ipv6) {
        sockaddr_in6 sa{};
        sa.sin6_family = AF_INET6;
        sa.sin6_port = htons(a.port);
        ::inet_pton(AF_INET6, a.host.c_str(), &sa.sin6_addr);
        r = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    } else {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(a.port);
        ::inet_pton(AF_INET, a.host.c_str(), &sa.sin_addr);
        r = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    }
    const int err = errno;
    ::close(fd);
    if (r == 0) return std::nullopt;
    std::string why = std::strerror(err);
    if (err == EADDRINUSE)
        why += ": another process listens there (another memhp-exporter?); pick a free port";
    else if (err == EADDRNOTAVAIL)
        why += ": no interface of this host has that address";
    else if (err == EACCES)
        why += ": ports below 1024 need root or CAP_NET_BIND_SERVICE";
    return why;
}

std::unique_ptr<prometheus::Exposer> listen_on(const ListenAddress& a) {
    try {
        return std::make_unique<prometheus::Exposer>(http_options(a));
    } catch (const std::exception&) {
        throw Error("cannot listen on " + a.civetweb() + ": " +
                    bind_problem(a).value_or("the HTTP server could not start") + " (--listen ADDR:PORT)");
    }
}

// Polls until a stop signal or a failed poll; stops serving before the
// session (the probes and the state) goes away.
int serve(collector::Session& session, ServiceManager& service, std::unique_ptr<prometheus::Exposer>& exposer) {
    collector::RunOptions run;
    run.stop = [] { return stop_requested(); };
    run.each = [&service] { service.watchdog(); };
    const int r = session.run(run);
    if (r < 0) std::fprintf(stderr, "memhp-exporter: ring buffer poll failed: %s\n", std::strerror(-r));
    service.stopping();
    exposer.reset();
    if (stop_requested())
        std::fprintf(stderr, "memhp-exporter: %s received, %llu events consumed, shut down cleanly\n",
                     stop_signal() == SIGTERM ? "SIGTERM" : "SIGINT",
                     static_cast<unsigned long long>(session.events()));
    return r < 0 ? 1 : 0;
}

}  // namespace

int run_exporter(const ExporterOptions& opts) {
    const ListenAddress addr = parse_listen(opts.listen);
    check_listen_supported(addr);
    collector::install_libbpf_logging(opts.verbose);
    // A taken port is reported before anything is loaded into the kernel; the
    // server itself starts only once the capabilities are gone.
    if (const auto why = bind_problem(addr))
        throw Error("cannot listen on " + addr.civetweb() + ": " + *why + " (--listen ADDR:PORT)");

    collector::SessionOptions sopts;
    sopts.probes = opts.probes;
    collector::Session session(std::move(sopts));
    const auto& probes = session.backend();

    // Attached: nothing after this needs a capability (privileges.hpp says why).
    const std::string privileges = collector::drop_capabilities_after_attach(opts.keep_capabilities);

    auto exposer = listen_on(addr);
    const auto ports = exposer->GetListeningPorts();
    const auto port = static_cast<std::uint16_t>(ports.empty() ? addr.port : ports.front());
    auto state = std::make_shared<LiveState>(session);
    // The Exposer keeps only a weak_ptr: this one lives until serve() returns.
    const auto collectable = std::make_shared<MetricsCollectable>(state, std::make_shared<SysfsHostSource>("/"));
    exposer->RegisterCollectable(collectable);
    std::fprintf(stderr,
                 "memhp-exporter %s: serving %s; attached %zu of %zu probes; memmap_on_memory=%s; capabilities "
                 "%s\n%s",
                 kVersion, addr.url(port).c_str(), probes.attached_count(), probes.attach_report().size(),
                 session.config().memmap_on_memory.value_or("absent").c_str(), privileges.c_str(),
                 probes.describe().c_str());
    std::fflush(stderr);
    ServiceManager service;
    service.ready("serving " + addr.url(port));
    return serve(session, service, exposer);
}

}  // namespace memhp::exporter
