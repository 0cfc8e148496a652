// SPDX-License-Identifier: Apache-2.0
#pragma once
// Errors a person can act on: what failed, why, and what to do about it.
#include <stdexcept>
#include <string>

namespace memhp {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown when the user's input is wrong (flags, sizes, names): exit code 2.
class UsageError : public Error {
public:
    using Error::Error;
};

// Thrown when the run was stopped by SIGINT/SIGTERM.
class Interrupted : public Error {
public:
    Interrupted() : Error("interrupted") {}
};

// "<what>: <strerror(errno)>"
[[nodiscard]] std::string errno_text(const std::string& what, int err);
[[noreturn]] void throw_errno(const std::string& what, int err);

}  // namespace memhp
