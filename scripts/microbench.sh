#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every Google Benchmark binary of memhp, one command: installs what is
# missing, builds, runs each and writes its JSON (--benchmark_out) into
# OUT_DIR (default memhp-results/microbench-<date>-<time>/):
#   memhp_collector_bench  collector throughput on synthetic events (host)
#   memhp_exporter_bench   /metrics render time and RSS with a 64-node state (host)
#   memhp_probe_bench      probe always-on cost and start-up vs bpftrace, in a
#                          lab guest it boots (--boot; about 2 min under TCG)
# usage: scripts/microbench.sh [OUT_DIR] [--no-guest]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=
guest=1
for a in "$@"; do
	case "$a" in
	--no-guest) guest=0 ;;
	-h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "microbench: unknown flag '$a' (see --help)" >&2; exit 2 ;;
	*) out=$a ;;
	esac
done
out=${out:-$root/memhp-results/microbench-$(date +%Y%m%d-%H%M%S)}
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
bin=${MEMHP_BUILD_DIR:-$root/build}/bin
mkdir -p "$out"
run() {
	local name=$1
	shift
	echo "microbench: $name -> $out/$name.json" >&2
	"$bin/$name" "$@" --benchmark_out="$out/$name.json" --benchmark_out_format=json
}
run memhp_collector_bench
run memhp_exporter_bench
[ $guest -eq 0 ] || run memhp_probe_bench --boot
echo "microbench: JSON written to $out" >&2
