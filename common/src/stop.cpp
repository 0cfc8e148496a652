// SPDX-License-Identifier: Apache-2.0
#include "memhp/stop.hpp"

#include <csignal>

#include "memhp/error.hpp"

namespace memhp {
namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
}  // namespace

void install_stop_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR and see the flag
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

void ignore_sigpipe() { std::signal(SIGPIPE, SIG_IGN); }

bool stop_requested() { return g_stop_signal != 0; }
int stop_signal() { return g_stop_signal; }
void reset_stop() { g_stop_signal = 0; }

void check_stop() {
    if (stop_requested()) throw Interrupted();
}

}  // namespace memhp
