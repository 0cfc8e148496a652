#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) and
# runs each for SECONDS (default 30) from its committed seed corpus.
#   scripts/fuzz.sh              # every target, 30 s each (the quick tier runs this)
#   scripts/fuzz.sh 3600 results # one long run
# New inputs go to $MEMHP_FUZZ_DIR/corpus/TARGET (default build/fuzz), never
# into the seeds; a finding leaves crash-* there and exits 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(results procfs qmp trace agent)
out=${MEMHP_FUZZ_DIR:-${MEMHP_BUILD_DIR:-$root/build}/fuzz}
command -v clang++ >/dev/null || { echo "memhp: clang++ missing: run scripts/install-deps.sh" >&2; exit 2; }
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ ! -f "$out/CMakeCache.txt" ]; then
	mkdir -p "$out"
	cmake -S "$root/tests/fuzz" -B "$out" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
		>"$out/configure.log" 2>&1 || { tail -20 "$out/configure.log" >&2; exit 2; }
fi
echo "memhp: building the fuzz targets in $out" >&2
cmake --build "$out" -j"$(nproc)" >"$out/build.log" 2>&1 || { tail -30 "$out/build.log" >&2; exit 2; }
status=0
for t in "${targets[@]}"; do
	seeds=$root/tests/fuzz/corpus/$t
	corpus=$out/corpus/$t
	mkdir -p "$corpus" "$out/findings/$t"
	echo "memhp: fuzzing $t for ${seconds} s" >&2
	log=$out/$t.log
	if ! (cd "$out/findings/$t" && "$out/fuzz_$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 "$corpus" "$seeds") >"$log" 2>&1; then
		echo "memhp: fuzz_$t found a problem (inputs in $out/findings/$t):" >&2
		tail -40 "$log" >&2
		status=1
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	echo "memhp: fuzz_$t: ${execs:-?} executions (${rate:-?}/s), corpus $(ls "$corpus" | wc -l) inputs" >&2
done
exit $status
