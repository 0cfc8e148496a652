#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configures (once) and builds memhp into build/ (or $MEMHP_BUILD_DIR).
# With target names as arguments, builds only those (./memhp builds just what
# the main job needs); with none, builds everything (tests and benchmarks too).
# Quiet when all is well; prints the tail of the log when the build fails.
#   MEMHP_WERROR=ON|OFF   warnings as errors (.ci/run sets ON; default OFF)
#   MEMHP_CMAKE_ARGS      extra arguments for the first configure
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
log=$build/build.log
mkdir -p "$build"
configure=()
if [ ! -f "$build/CMakeCache.txt" ]; then
	echo "memhp: configuring the build in $build" >&2
	configure=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
	# ccache (installed by install-deps.sh) lets fresh clones and worktrees
	# reuse each other's objects; paths are hashed relative to the checkout.
	if command -v ccache >/dev/null; then
		configure+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
	fi
	# shellcheck disable=SC2206 # word splitting of the extra arguments is wanted
	configure+=(${MEMHP_CMAKE_ARGS:-})
fi
if [ -n "${MEMHP_WERROR:-}" ] && ! grep -qx "MEMHP_WERROR:BOOL=${MEMHP_WERROR}" "$build/CMakeCache.txt" 2>/dev/null; then
	configure+=(-DMEMHP_WERROR="$MEMHP_WERROR")
fi
if [ ${#configure[@]} -gt 0 ] || [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$root" -B "$build" "${configure[@]}" >"$log" 2>&1 || {
		tail -30 "$log" >&2
		echo "memhp: cmake failed (log: $log)" >&2
		exit 1
	}
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
start=$(date +%s)
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
# Debug info then names the first checkout that compiled an object; a cache
# hit in another checkout is worth that.
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-true}
if ! cmake --build "$build" -j"$(nproc)" "${targets[@]}" >"$log" 2>&1; then
	grep -E 'error|Error' "$log" | head -30 >&2 || true
	tail -15 "$log" >&2
	echo "memhp: build failed (log: $log)" >&2
	exit 1
fi
took=$(($(date +%s) - start))
[ $took -lt 5 ] || echo "memhp: built ${*:-everything} in ${took} s" >&2
