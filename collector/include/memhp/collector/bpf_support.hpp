// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared libbpf plumbing: prerequisite checks with remedies, libbpf's log
// captured so an error can quote it, and small RAII helpers.
#include <string>

#include "memhp/error.hpp"

namespace memhp::collector {

// Loading or attaching BPF failed. The message says what to do.
class BpfError : public Error {
public:
    using Error::Error;
};

// Checks what every memhp probe needs before libbpf is asked: kernel BTF,
// privileges, tracefs. Throws BpfError with a remedy. `sys_root` is "/" on a
// real system (tests point it at fixture trees).
void check_bpf_prerequisites(const std::string& sys_root = "/");

// Routes libbpf's messages into a buffer (warnings and errors), shown in
// BpfError messages; with verbose, debug messages go to stderr as well.
void install_libbpf_logging(bool verbose = false);
[[nodiscard]] std::string libbpf_log_tail(std::size_t lines = 6);
void clear_libbpf_log();

}  // namespace memhp::collector
