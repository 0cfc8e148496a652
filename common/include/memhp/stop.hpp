// SPDX-License-Identifier: Apache-2.0
#pragma once
// SIGINT/SIGTERM handling: a flag that long waits check, so every wait ends
// promptly and destructors (which kill QEMU, remove sockets) get to run.
namespace memhp {

void install_stop_handlers();
// Writes to a closed pipe or socket return EPIPE instead of killing the
// process; every memhp entry point that talks to children calls this.
void ignore_sigpipe();
[[nodiscard]] bool stop_requested();
// Throws Interrupted if a stop was requested.
void check_stop();
// For tests and for --keep's "wait until Ctrl-C".
void reset_stop();
[[nodiscard]] int stop_signal();

}  // namespace memhp
