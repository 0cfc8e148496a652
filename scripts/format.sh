#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# clang-format over memhp's C++ (the style is .clang-format at the top).
#   scripts/format.sh           reformat every tracked .cpp/.hpp in place
#   scripts/format.sh --check   change nothing; list files that differ, exit 1 if any
# BPF C (bpf/, bench/micro/*.bpf.c) keeps the kernel's style and is not touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v clang-format >/dev/null || { echo "memhp: clang-format is missing: run scripts/install-deps.sh" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
if [ "${1:-}" = "--check" ]; then
	bad=()
	for f in "${files[@]}"; do
		clang-format --style=file --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
	done
	if [ ${#bad[@]} -gt 0 ]; then
		printf 'memhp: not clang-formatted: %s\n' "${bad[@]}" >&2
		echo "memhp: run scripts/format.sh to fix ${#bad[@]} file(s)" >&2
		exit 1
	fi
	echo "memhp: ${#files[@]} files clang-formatted"
	exit 0
fi
[ $# -eq 0 ] || { echo "usage: scripts/format.sh [--check]" >&2; exit 2; }
clang-format --style=file -i "${files[@]}"
