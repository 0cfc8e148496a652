// SPDX-License-Identifier: Apache-2.0
// A load-test target for bench/exporter-load.sh: memhp-exporter's serving path
// (prometheus-cpp Exposer + MetricsCollectable + LiveState's snapshot) over
// the large synthetic state, without BPF, so it runs on any host. Prints
// "listening PORT" and serves until SIGTERM/SIGINT; then prints its peak RSS.
#include <prometheus/exposer.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "exporter_large_state.hpp"
#include "memhp/exporter/daemon.hpp"
#include "memhp/stop.hpp"

namespace {

class Fixed : public memhp::exporter::SnapshotSource, public memhp::exporter::HostSource {
public:
    Fixed() : snap_(memhp::bench::large_snapshot()), host_(memhp::bench::large_host()) {}
    memhp::exporter::ProbeSnapshot snapshot(bool) const override {
        std::lock_guard lock(mu_);
        return snap_;
    }
    memhp::exporter::HostState read() override { return host_; }

private:
    mutable std::mutex mu_;
    memhp::exporter::ProbeSnapshot snap_;
    memhp::exporter::HostState host_;
};

std::string status_field(const std::string& field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with(field)) return line;
    return field + " ?";
}

}  // namespace

int main(int argc, char** argv) {
    const std::string listen = argc > 1 ? argv[1] : "127.0.0.1:0";
    memhp::install_stop_handlers();
    auto source = std::make_shared<Fixed>();
    auto collectable = std::make_shared<memhp::exporter::MetricsCollectable>(source, source);
    prometheus::Exposer exposer(memhp::exporter::http_options(memhp::exporter::parse_listen(listen)));
    exposer.RegisterCollectable(collectable);
    std::printf("listening %d\n", exposer.GetListeningPorts().at(0));
    std::fflush(stdout);
    while (!memhp::stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::printf("%s\n%s\n", status_field("VmHWM").c_str(), status_field("VmRSS").c_str());
    return 0;
}
