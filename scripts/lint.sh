#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# clang-tidy (.clang-tidy) over the C++ files changed since a base commit.
#   scripts/lint.sh [BASE]    BASE defaults to the merge base with main, or
#                             HEAD~1 on main itself; --all lints every file.
# Uses the compile commands of the build in $MEMHP_BUILD_DIR (default build/);
# exits 1 when clang-tidy reports a warning in a changed file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
cd "$root"
command -v clang-tidy >/dev/null || { echo "memhp: clang-tidy is missing: run scripts/install-deps.sh" >&2; exit 2; }
[ -f "$build/compile_commands.json" ] || { echo "memhp: no $build/compile_commands.json: run scripts/build.sh first" >&2; exit 2; }
if [ "${1:-}" = "--all" ]; then
	mapfile -t files < <(git ls-files '*.cpp')
else
	base=${1:-}
	if [ -z "$base" ]; then
		base=$(git merge-base HEAD main 2>/dev/null || true)
		[ -n "$base" ] && [ "$base" != "$(git rev-parse HEAD)" ] || base=$(git rev-parse HEAD~1 2>/dev/null || git rev-parse HEAD)
	fi
	mapfile -t files < <(git diff --name-only --diff-filter=ACMR "$base" -- '*.cpp')
fi
# Only files the build knows (generated and test-fixture sources excepted).
lint=()
for f in "${files[@]}"; do
	grep -q "\"file\": \"$root/$f\"" "$build/compile_commands.json" && lint+=("$f")
done
if [ ${#lint[@]} -eq 0 ]; then
	echo "memhp: lint: no changed C++ files"
	exit 0
fi
echo "memhp: clang-tidy on ${#lint[@]} file(s)" >&2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# One clang-tidy per core; each writes its own file, gathered in order.
parts=$(mktemp -d)
trap 'rm -rf "$out" "$parts"' EXIT
status=0
i=0
for f in "${lint[@]}"; do
	i=$((i + 1))
	printf '%s\0%s\0' "$f" "$parts/$i"
done | xargs -0 -n2 -P"$(nproc)" sh -c 'clang-tidy -p "$0" --quiet "$1" >"$2" 2>/dev/null || echo failed >"$2.failed"' "$build" || status=1
for ((j = 1; j <= i; j++)); do cat "$parts/$j" >>"$out"; done
ls "$parts"/*.failed >/dev/null 2>&1 && status=1
if grep -qE '(warning|error):' "$out"; then
	grep -E -A3 '(warning|error):' "$out" | grep -v '^--$' | head -200 >&2
	echo "memhp: lint: clang-tidy found $(grep -cE '(warning|error):' "$out") issue(s)" >&2
	exit 1
fi
[ $status -eq 0 ] || { cat "$out" >&2; exit 1; }
echo "memhp: lint: ${#lint[@]} file(s) clean"
