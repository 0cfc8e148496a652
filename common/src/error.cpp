// SPDX-License-Identifier: Apache-2.0
#include "memhp/error.hpp"

#include <cstring>

namespace memhp {

std::string errno_text(const std::string& what, int err) { return what + ": " + std::strerror(err); }

void throw_errno(const std::string& what, int err) { throw Error(errno_text(what, err)); }

}  // namespace memhp
