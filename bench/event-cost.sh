#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What kernel-patches/7.2's memory_hotplug events cost, measured with memhp's
# own A/B harness: two gated runs, each interleaving two Debian 7.2 guests on
# this host, so both arms see the same host. The baseline is the same source
# and lab config without the series (`--kernel unpatched-7.2`, built from
# the same object tree in minutes): Debian's own 7.2 image has another config
# (and onlines into ZONE_NORMAL by default), so against it the run would
# measure the config, not the events.
#   1. disabled: unpatched-7.2 against patched-7.2 with nothing attached
#      (probes=off on both: the events are compiled in behind their static
#      keys). Should come out "same" on the host's wall times.
#   2. enabled: unpatched-7.2 with memhp on its fentry path against
#      patched-7.2 with memhp on the tracepoints, both traced.
# Prints each run's gate table (ratios with intervals, verdicts). The
# verdicts are figures, not assertions: the script fails only when a run
# fails or its input is bad.
#   bench/event-cost.sh [OUT_DIR] [memhp ab options, e.g. --cycles 40 --boots 8]
# The first run builds both kernels if they are not cached (~12 min on 2
# idle cores for the first, minutes for the second).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
out=event-cost
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
	out=$1
	shift
fi
case " $* " in
*" --arm "* | *" --arm="*) echo "memhp: bench/event-cost.sh sets the arms itself; pass other memhp ab options" >&2; exit 2 ;;
esac
"$root/scripts/install-deps.sh"
MEMHP_BUILD_DIR=$build "$root/scripts/build.sh" memhp memhp-agent
memhp=$build/bin/memhp
mkdir -p "$out"

status=0
run() { # NAME ARM ARM
	local name=$1 rc=0
	shift
	echo "memhp: event cost, $name: memhp ab $*" >&2
	"$memhp" ab --gate --arm "$1" --arm "$2" --out "$out/$name" "${@:3}" || rc=$?
	case $rc in
	0 | 1 | 3) ;; # no regression / regression / inconclusive: all figures
	*)
		echo "memhp: the $name run failed (exit $rc); see $out/$name" >&2
		status=$rc
		return 0
		;;
	esac
	echo
	echo "=== $name (gate exit $rc) ==="
	sed -n '/^## Gate/,$p' "$out/$name/summary.md"
}
run disabled base:kernel=unpatched-7.2,probes=off patched:kernel=patched-7.2,probes=off "$@"
run enabled fentry:kernel=unpatched-7.2 tracepoints:kernel=patched-7.2 "$@"
exit $status
