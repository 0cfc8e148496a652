#!/usr/bin/env bash
# Load test for memhp-exporter's /metrics: ~100 scrapes/s for 60 s from a
# second process (wrk) on loopback, against memhp_exporter_load_target, which
# serves the exporter's path over the large benchmark state (64 nodes, every
# phase populated). Prints wrk's latency distribution (p50..p99), the achieved
# rate, errors, and the target's peak RSS. Figures only: nothing is asserted
# beyond "wrk ran and saw no errors".
#   bench/exporter-load.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${MEMHP_BUILD_DIR:-$root/build}}
seconds=${2:-60}
target=$build/bin/memhp_exporter_load_target
[ -x "$target" ] || { echo "memhp: $target missing: build first (scripts/build.sh)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "memhp: wrk missing: run scripts/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$target" 127.0.0.1:0 >"$work/target.out" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q '^listening' "$work/target.out" && break; sleep 0.1; done
port=$(awk '/^listening/ {print $2}' "$work/target.out")
[ -n "$port" ] || { cat "$work/target.out" >&2; echo "memhp: load target did not start" >&2; exit 1; }
bytes=$(curl -s "http://127.0.0.1:$port/metrics" | wc -c)

# 4 connections, each waiting 36 ms after every response: about 100 scrapes/s
# (36 ms + the scrape itself, ~4 ms).
cat >"$work/pace.lua" <<'LUA'
function delay() return 36 end
LUA
echo "memhp: $((seconds)) s of paced scrapes (4 connections, 36 ms apart) of a ${bytes}-byte /metrics" >&2
timeout $((seconds + 30)) wrk -t2 -c4 -d"${seconds}s" --timeout 5s --latency -s "$work/pace.lua" \
	"http://127.0.0.1:$port/metrics" | tee "$work/wrk.out"
kill -TERM "$pid"
wait "$pid" || true
pid=
grep -E 'VmHWM|VmRSS' "$work/target.out"
if grep -qE 'Non-2xx|Socket errors' "$work/wrk.out"; then
	echo "memhp: wrk reported errors" >&2
	exit 1
fi
exit 0
