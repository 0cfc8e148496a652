#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Boots a Debian lab guest (default 6.1; e.g. `bench/probe-overhead.sh 6.12`)
# and measures memhp's probe costs in it: the always-on cost on the page
# allocator's hot path against empty programs, and start-up time against an
# equivalent bpftrace script. Extra arguments go to memhp_probe_bench
# (--reps=N, --no-faults, --no-startup, --benchmark_*).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
kernel=6.1
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
	kernel=$1
	shift
fi
"$root/scripts/install-deps.sh"
MEMHP_BUILD_DIR=$build "$root/scripts/build.sh"
exec "$build/bin/memhp_probe_bench" --boot="$kernel" "$@"
