// SPDX-License-Identifier: Apache-2.0
// memhp-agent: runs inside the lab guest (chrooted into a root built from
// the host's read-only 9p shares, lab/src/shares.cpp) and serves the host's
// requests over a virtio-serial port. See memhp/lab/agent_protocol.hpp for
// the protocol and agent_server.cpp for the requests. Single-threaded: the host sends one request at a time.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "agent_server.hpp"
#include "memhp/files.hpp"
#include "memhp/line_channel.hpp"

int main(int argc, char** argv) {
    CLI::App app{"memhp guest agent: serves the lab host over a virtio-serial port (started by the guest's init)"};
    std::string port;
    std::string cwd = "/";
    app.add_option("--port", port, "virtio-serial port device, e.g. /dev/vport0p1")->required();
    app.add_option("--cwd", cwd, "working directory for commands (the host's cwd at launch)");
    CLI11_PARSE(app, argc, argv);
    memhp::agent::set_cwd(cwd);
    ::signal(SIGPIPE, SIG_IGN);
    // Never the OOM killer's victim: the scenarios push the guest to OOM on
    // purpose. Inherited by what it starts (memhp trace); memhp-hog raises
    // its own back up.
    try {
        memhp::write_file("/proc/self/oom_score_adj", "-1000");
    } catch (const std::exception& e) {
        std::cerr << "memhp-agent: " << e.what() << "\n";
    }
    // Near the watermarks reclaim evicts file pages, our own text among them,
    // read back over 9p under TCG: the agent would stall for seconds.
    if (::mlockall(MCL_CURRENT | MCL_FUTURE) != 0)
        std::cerr << "memhp-agent: mlockall: " << std::strerror(errno) << "\n";

    int fd = ::open(port.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        std::cerr << "memhp-agent: cannot open " << port << ": " << std::strerror(errno) << "\n";
        return 1;
    }
    memhp::LineChannel ch(fd, port);
    ch.set_eof_is_retry(true);  // the host may not be connected yet
    try {
        memhp::agent::serve(ch);
    } catch (const std::exception& e) {
        std::cerr << "memhp-agent: " << e.what() << "\n";
        return 1;
    }
}
