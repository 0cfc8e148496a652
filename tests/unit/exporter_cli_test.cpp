// SPDX-License-Identifier: Apache-2.0
// memhp-exporter as a program: bad flags and addresses give clear errors and
// a non-zero exit before anything touches the kernel; a real HTTP scrape of
// the exporter's /metrics passes `promtool check metrics` with no findings.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/exposer.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "fake_live_state.hpp"
#include "memhp/error.hpp"
#include "memhp/exporter/daemon.hpp"
#include "memhp/exporter/live_state.hpp"
#include "memhp/exporter/metrics.hpp"
#include "memhp/process.hpp"

namespace memhp::exporter {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string exporter_bin() {
    return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "memhp-exporter").string();
}

RunResult run_exporter_bin(std::vector<std::string> args) {
    args.insert(args.begin(), exporter_bin());
    return run(args, {.timeout = std::chrono::seconds(20)});
}

// A listening TCP socket on 127.0.0.1 (a port someone else holds).
class HeldPort {
public:
    HeldPort() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd_, 1) != 0)
            throw std::runtime_error(std::string("cannot hold a port: ") + std::strerror(errno));
        socklen_t len = sizeof sa;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
        port_ = ntohs(sa.sin_port);
    }
    ~HeldPort() { ::close(fd_); }
    [[nodiscard]] int port() const { return port_; }

private:
    int fd_ = -1;
    int port_ = 0;
};

TEST(ExporterCli, UnknownFlagExitsTwo) {
    auto r = run_exporter_bin({"--bogus"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("--bogus"));
}

TEST(ExporterCli, MalformedListenExitsTwoWithAnExample) {
    auto r = run_exporter_bin({"--listen", "localhost:80"});
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("not a numeric IPv4 address"));
    EXPECT_THAT(r.err, HasSubstr("127.0.0.1:10466"));
}

TEST(ExporterCli, PortInUseIsReportedBeforeLoadingAnything) {
    HeldPort held;
    const std::string addr = "127.0.0.1:" + std::to_string(held.port());
    auto r = run_exporter_bin({"--listen", addr});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("cannot listen on " + addr));
    EXPECT_THAT(r.err, HasSubstr("Address already in use"));
    EXPECT_THAT(r.err, Not(HasSubstr("BPF"))) << "the port is checked first";
}

TEST(ExporterCli, AddressNotOnThisHost) {
    auto r = run_exporter_bin({"--listen", "192.0.2.1:10466"});  // TEST-NET-1: never local
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("no interface of this host has that address"));
}

TEST(ExporterCli, HelpAndVersion) {
    auto h = run_exporter_bin({"--help"});
    EXPECT_EQ(h.exit_code, 0);
    for (const char* s : {"--listen", "--list-metrics", "--version", "CAP_BPF", "127.0.0.1:10466", "SIGTERM"})
        EXPECT_THAT(h.out, HasSubstr(s));
    auto v = run_exporter_bin({"--version"});
    EXPECT_EQ(v.exit_code, 0);
    EXPECT_THAT(v.out, HasSubstr("memhp-exporter 0."));
}

TEST(ExporterCli, ListMetricsPrintsTheGeneratedTable) {
    auto r = run_exporter_bin({"--list-metrics"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out, metrics_markdown());
}

// ---- a real scrape through prometheus-cpp's HTTP server ----------------------------

class TwoNodes : public collector::NodeResolver {
public:
    int node_of_pfn(std::uint64_t pfn) override { return pfn < 0x100000 ? 0 : 1; }
};

class FixedHost : public HostSource {
public:
    HostState read() override {
        HostState h;
        h.block_size_bytes = 128ull << 20;
        h.blocks[{0, "online", "Normal"}] = 8;
        h.blocks[{1, "online", "Movable"}] = 1;
        h.memmap_on_memory = "Y";
        h.auto_online_policy = "offline";
        h.bpf_stats_enabled = true;
        return h;
    }
};

// Every family populated, served over HTTP, linted by promtool.
TEST(ExporterHttp, PromtoolCheckMetricsFindsNothing) {
    ASSERT_TRUE(find_program("promtool"))
        << "promtool missing: run scripts/install-deps.sh (Debian package prometheus)";
    ASSERT_TRUE(find_program("curl")) << "curl missing: run scripts/install-deps.sh";
    auto state = std::make_shared<test::FakeLiveState>(std::make_unique<TwoNodes>());
    auto e = [](std::uint32_t type, std::uint64_t id, int ret = 0) {
        memhp_event ev{};
        ev.type = type;
        ev.op_id = id;
        ev.nid = 1;
        ev.start_pfn = 0x140000;
        ev.nr_pages = 32768;
        ev.duration_ns = 3'000'000;
        ev.ret = ret;
        return ev;
    };
    auto alloc = e(MEMHP_EV_PAGE_ALLOC, 1);
    alloc.pfn = 0x10000;
    alloc.order = 9;
    state->consume(alloc);
    state->consume(e(MEMHP_EV_POPULATE, 1));
    auto add = e(MEMHP_EV_ADD, 1);
    add.flags |= MEMHP_F_KERNEL_MEMMAP;
    add.kernel_memmap_before = 0;
    add.kernel_memmap_after = 512;
    state->consume(add);
    state->consume(e(MEMHP_EV_ONLINE, 2));
    state->consume(e(MEMHP_EV_OFFLINE, 3, -EBUSY));

    class WithProbes : public SnapshotSource {
    public:
        explicit WithProbes(std::shared_ptr<test::FakeLiveState> s) : s_(std::move(s)) {}
        ProbeSnapshot snapshot(bool with_run_stats) const override {
            auto snap = s_->snapshot(with_run_stats);
            snap.probes = {{"add_exit", "add_memory_resource", "fexit", true, true, ""}};
            snap.run_stats = {{"add_exit", 12345, 6}};
            return snap;
        }

    private:
        std::shared_ptr<test::FakeLiveState> s_;
    };
    auto source = std::make_shared<WithProbes>(state);
    auto collectable = std::make_shared<MetricsCollectable>(source, std::make_shared<FixedHost>());
    prometheus::Exposer exposer("127.0.0.1:0");
    exposer.RegisterCollectable(collectable);
    const auto port = exposer.GetListeningPorts().at(0);
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
    auto scrape = run({"curl", "-sS", "--fail", "--max-time", "10", url}, {.timeout = std::chrono::seconds(15)});
    ASSERT_TRUE(scrape.ok()) << scrape.err;
    for (const auto& d : metric_catalog()) EXPECT_THAT(scrape.out, HasSubstr("# TYPE " + d.name + " ")) << d.name;
    auto lint = run({"promtool", "check", "metrics"}, {.timeout = std::chrono::seconds(30), .stdin_data = scrape.out});
    EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
    EXPECT_EQ(lint.out + lint.err, "") << "promtool findings on a real scrape";
}

// --listen [::1]:PORT was advertised but never started: Debian's civetweb
// has no IPv6. Now the exporter refuses it before anything else, exit 2,
// saying what to do -- or, with a civetweb built with IPv6, serves there. The
// detection itself is checked against civetweb: where it says no IPv6,
// civetweb indeed cannot start on [::1]; where it says yes, a scrape over
// [::1] answers.
TEST(ExporterCli, Ipv6ListenWorksOrIsRefusedUpFront) {
    const auto addr = parse_listen("[::1]:0");
    if (!http_server_has_ipv6()) {
        auto r = run_exporter_bin({"--listen", "[::1]:10466"});
        EXPECT_EQ(r.exit_code, 2) << r.err;
        EXPECT_THAT(r.err, HasSubstr("--listen '[::1]:10466': the HTTP server memhp-exporter uses"));
        EXPECT_THAT(r.err, HasSubstr("no IPv6 support"));
        EXPECT_THAT(r.err, HasSubstr("127.0.0.1:10466"));
        EXPECT_THAT(r.err, Not(HasSubstr("BPF"))) << "refused before anything is loaded";
        EXPECT_THROW(check_listen_supported(addr), UsageError);
        EXPECT_THROW(prometheus::Exposer{http_options(addr)}, std::exception)
            << "civetweb started on [::1] although mg_check_feature says it has no IPv6";
        EXPECT_NO_THROW(check_listen_supported(parse_listen("127.0.0.1:0")));
        return;
    }
    EXPECT_NO_THROW(check_listen_supported(addr));
    ASSERT_TRUE(find_program("curl")) << "curl missing: run scripts/install-deps.sh";
    prometheus::Exposer exposer(http_options(addr));
    auto state = std::make_shared<test::FakeLiveState>(std::make_unique<TwoNodes>());
    exposer.RegisterCollectable(std::make_shared<MetricsCollectable>(state, std::make_shared<FixedHost>()));
    const auto port = static_cast<std::uint16_t>(exposer.GetListeningPorts().at(0));
    const auto r =
        run({"curl", "-sf", "-g", "--max-time", "10", addr.url(port)}, {.timeout = std::chrono::seconds(20)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr("memhp_build_info"));
}

// Slow and oversized clients (slow loris, a 100 KiB URL) must not starve a
// scrape: with civetweb's defaults (4 workers, 30 s request timeout) 8
// trickling sockets blocked every scrape for more than 50 s.
TEST(ExporterHttp, SlowClientsDoNotStarveAScrape) {
    ASSERT_TRUE(find_program("curl")) << "curl missing: run scripts/install-deps.sh";
    auto state = std::make_shared<test::FakeLiveState>(std::make_unique<TwoNodes>());
    auto collectable = std::make_shared<MetricsCollectable>(state, std::make_shared<FixedHost>());
    ListenAddress addr = parse_listen("127.0.0.1:0");
    prometheus::Exposer exposer(http_options(addr));
    exposer.RegisterCollectable(collectable);
    const auto port = exposer.GetListeningPorts().at(0);
    auto connect_one = [port] {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
            ::close(fd);
            return -1;
        }
        return fd;
    };
    std::atomic<bool> stop{false};
    std::atomic<int> served_slow{0};
    std::vector<std::thread> slow;
    for (int i = 0; i < 12; ++i)
        slow.emplace_back([&] {
            // Reconnect whenever the server drops us: the pressure never stops.
            while (!stop) {
                const int fd = connect_one();
                if (fd < 0) continue;
                const std::string head = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
                (void)::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
                while (!stop && ::send(fd, "a", 1, MSG_NOSIGNAL) == 1)
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                ::close(fd);
                ++served_slow;
            }
        });
    // A 100 KiB request line: refused, not buffered without end.
    {
        const int fd = connect_one();
        ASSERT_GE(fd, 0);
        const std::string line = "GET /" + std::string(100 << 10, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n";
        (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
        ::close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the slow clients hold their workers
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
    int ok = 0;
    std::string errors;
    for (int i = 0; i < 5; ++i) {
        auto scrape = run({"curl", "-sS", "--fail", "--max-time", "10", url}, {.timeout = std::chrono::seconds(15)});
        if (scrape.ok() && scrape.out.find("# TYPE ") != std::string::npos)
            ++ok;
        else
            errors += scrape.err;
    }
    stop = true;
    for (auto& t : slow) t.join();
    EXPECT_EQ(ok, 5) << errors;
}

}  // namespace
}  // namespace memhp::exporter
