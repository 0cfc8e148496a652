#pragma once
// SIGINT/SIGTERM handling: a flag that long waits check, so every wait ends
// promptly and destructors (which kill QEMU, remove sockets) get to run.
namespace memhp {

void install_stop_handlers();
[[nodiscard]] bool stop_requested();
// Throws Interrupted if a stop was requested.
void check_stop();
// For tests and for --keep's "wait until Ctrl-C".
void reset_stop();
[[nodiscard]] int stop_signal();

}  // namespace memhp
