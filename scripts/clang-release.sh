#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the tree as a packager would, in Release with clang and warnings as
# errors, in a build directory of its own ($MEMHP_BUILD_DIR/clang-release),
# so a warning that only clang or only -O2/-O3 sees cannot come back (GCC 12
# Release once stopped on -Werror=restrict and -Werror=maybe-uninitialized).
# The main build (scripts/build.sh) covers GCC. Tests are not built here:
# their code is built, warning-free, by the main and sanitizer builds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
command -v clang++ >/dev/null || { echo "memhp: clang++ is missing: run scripts/install-deps.sh" >&2; exit 2; }
echo "memhp: Release build with clang, -Werror (in $build/clang-release)" >&2
CC=clang CXX=clang++ MEMHP_BUILD_DIR=$build/clang-release MEMHP_WERROR=ON \
	MEMHP_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DMEMHP_BUILD_TESTS=OFF ${MEMHP_CMAKE_ARGS:-}" \
	"$root/scripts/build.sh"
log=$build/clang-release/build.log
if grep -q 'warning:' "$log"; then
	grep 'warning:' "$log" | head -20 >&2
	echo "memhp: the clang Release build has warnings (log: $log)" >&2
	exit 1
fi
echo "memhp: clang Release build is warning-free"
