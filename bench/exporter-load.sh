#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Load test for memhp-exporter's /metrics: ~100 scrapes/s for SECONDS (60)
# from a second process (wrk) on loopback, against memhp_exporter_load_target,
# which serves the exporter's path over the large benchmark state (64 nodes,
# every phase populated) -- twice: alone, then with SLOW (8) slow clients
# connected the whole time (half trickle a request header one byte per
# 100 ms, half connect and send nothing; each reconnects whenever the server
# drops it: the slow loris of issue 13). Prints wrk's latency distribution of
# each phase, then p50/p99, rate and errors side by side, and the target's
# peak RSS. Figures only: nothing is asserted beyond "wrk ran and saw no
# errors" (non-2xx, socket errors, timeouts).
#   bench/exporter-load.sh [BUILD_DIR] [SECONDS] [SLOW]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${MEMHP_BUILD_DIR:-$root/build}}
seconds=${2:-60}
slow=${3:-8}
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

# One slow client, forever: trickle (a header byte every 100 ms) or idle
# (connected, silent, until the server closes). Bash's /dev/tcp: no new tool.
slow_client() {
	local mode=$1 fd
	trap '' PIPE
	while :; do
		exec {fd}<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null || { sleep 0.1; continue; }
		if [ "$mode" = trickle ]; then
			printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ' 1>&"$fd" 2>/dev/null || true
			while printf 'a' 1>&"$fd" 2>/dev/null; do sleep 0.1; done
		else
			while read -r -t 60 -u "$fd" _; do :; done 2>/dev/null || true
		fi
		exec {fd}>&-
	done
}

slow_pids=()
stop_slow() {
	local p
	for p in "${slow_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${slow_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	slow_pids=()
}
trap 'stop_slow; [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# wrk's "50%  1.23ms" -> milliseconds
pct_ms() {
	awk -v p="$1" '$1 == p {v = $2; m = 1
		if (v ~ /us$/) m = 0.001; else if (v ~ /ms$/) m = 1; else if (v ~ /s$/) m = 1000
		sub(/[a-z]+$/, "", v); printf "%.2f", v * m}' "$2"
}

# wrk's percentiles with a delay() script count the pacing delay into some
# samples (its p90/p99 sit near 36 ms alone); a fresh-connection curl probe
# beside the load, one scrape every 100 ms, times each scrape by itself.
probe() {  # label: curl's time_total per scrape, in ms, one a line
	local end=$((SECONDS + seconds))
	while [ $SECONDS -lt $end ]; do
		curl -s -o /dev/null --max-time 10 -w '%{time_total} %{http_code}\n' "http://127.0.0.1:$port/metrics" || echo "- 000"
		sleep 0.1
	done >"$work/probe-$1.out"
}
probe_pct() {  # PERCENT label
	awk '$2 == 200 {print $1 * 1000}' "$work/probe-$2.out" | sort -n |
		awk -v p="$1" '{v[NR] = $1} END {if (!NR) {print "-"; exit}; i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; printf "%.2f", v[i]}'
}
probe_errors() { awk '$2 != 200' "$work/probe-$1.out" | wc -l; }

run_phase() {  # label
	echo "memhp: [$1] ${seconds} s of paced scrapes (4 connections, 36 ms apart) of a ${bytes}-byte /metrics," \
		"and a curl probe every 100 ms" >&2
	probe "$1" &
	local probe_pid=$!
	timeout $((seconds + 30)) wrk -t2 -c4 -d"${seconds}s" --timeout 5s --latency -s "$work/pace.lua" \
		"http://127.0.0.1:$port/metrics" | tee "$work/wrk-$1.out"
	wait "$probe_pid"
}

run_phase alone
for i in $(seq "$slow"); do
	if [ $((i % 2)) -eq 1 ]; then slow_client trickle & else slow_client idle & fi
	slow_pids+=($!)
done
sleep 1  # let them connect
held="?"
command -v ss >/dev/null && held=$(ss -Htn state established "( sport = :$port )" | wc -l)
echo "memhp: $slow slow clients started ($(((slow + 1) / 2)) trickling, $((slow / 2)) idle); connections the server holds: $held" >&2
run_phase slow
stop_slow

kill -TERM "$pid"
wait "$pid" || true
pid=
errors() { grep -E 'Non-2xx|Socket errors' "$1" | tr -s ' ' | paste -sd ';' -; }
printf '\n%-28s %12s %12s\n' "scrape latency (ms)" "alone" "$slow slow"
for p in 50 99; do
	printf '%-28s %12s %12s\n' "curl probe p$p" "$(probe_pct "$p" alone)" "$(probe_pct "$p" slow)"
done
printf '%-28s %12s %12s\n' "curl probe scrapes" "$(wc -l <"$work/probe-alone.out")" "$(wc -l <"$work/probe-slow.out")"
printf '%-28s %12s %12s\n' "curl probe errors" "$(probe_errors alone)" "$(probe_errors slow)"
for p in 50% 90% 99%; do
	printf '%-28s %12s %12s\n' "wrk p${p%\%} (incl. pacing)" "$(pct_ms "$p" "$work/wrk-alone.out")" "$(pct_ms "$p" "$work/wrk-slow.out")"
done
printf '%-28s %12s %12s\n' "requests/s" "$(awk '/^Requests\/sec/ {print $2}' "$work/wrk-alone.out")" \
	"$(awk '/^Requests\/sec/ {print $2}' "$work/wrk-slow.out")"
printf '%-28s %12s %12s\n' "errors" "$(errors "$work/wrk-alone.out" | grep -c . || true)" \
	"$(errors "$work/wrk-slow.out" | grep -c . || true)"
grep -E 'VmHWM|VmRSS' "$work/target.out"
if [ "$(probe_errors alone)" != 0 ] || [ "$(probe_errors slow)" != 0 ]; then
	echo "memhp: the curl probe saw failed scrapes" >&2
	exit 1
fi
if grep -qE 'Non-2xx|Socket errors' "$work/wrk-alone.out" "$work/wrk-slow.out"; then
	grep -hE 'Non-2xx|Socket errors' "$work/wrk-alone.out" "$work/wrk-slow.out" >&2
	echo "memhp: wrk reported errors" >&2
	exit 1
fi
exit 0
