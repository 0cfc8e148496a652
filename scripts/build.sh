#!/usr/bin/env bash
# Configures (once) and builds memhp into build/ (or $MEMHP_BUILD_DIR).
# Quiet when all is well; prints the tail of the log when the build fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
log=$build/build.log
mkdir -p "$build"
if [ ! -f "$build/CMakeCache.txt" ]; then
	echo "memhp: configuring the build in $build" >&2
	launcher=()
	# ccache (installed by install-deps.sh) lets fresh clones and worktrees
	# reuse each other's objects; paths are hashed relative to the checkout.
	if command -v ccache >/dev/null; then
		launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
	fi
	cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" ${MEMHP_CMAKE_ARGS:-} >"$log" 2>&1 || {
		tail -30 "$log" >&2
		echo "memhp: cmake failed (log: $log)" >&2
		exit 1
	}
fi
start=$(date +%s)
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
if ! cmake --build "$build" -j"$(nproc)" >"$log" 2>&1; then
	grep -E 'error|Error' "$log" | head -30 >&2 || true
	tail -15 "$log" >&2
	echo "memhp: build failed (log: $log)" >&2
	exit 1
fi
took=$(($(date +%s) - start))
[ $took -lt 5 ] || echo "memhp: built in ${took} s" >&2
