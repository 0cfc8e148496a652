#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The man pages (help2man, build/man) exist for every command and mention
# every flag its --help lists, so they cannot drift from it.
#   man_pages_test.sh BUILD_DIR
set -euo pipefail
build=$1
fail=0
check() { # page command...
	local page=$build/man/$1.1.gz
	shift
	if [ ! -s "$page" ]; then
		echo "FAIL: $page missing" >&2
		fail=1
		return
	fi
	local text flags
	text=$(zcat "$page" | sed 's/\\-/-/g')
	flags=$("$@" --help | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u)
	[ -n "$flags" ] || { echo "FAIL: $* --help lists no flags" >&2; fail=1; }
	for f in $flags; do
		grep -qF -- "$f" <<<"$text" || { echo "FAIL: $page does not mention $f" >&2; fail=1; }
	done
}
check memhp-exporter "$build/bin/memhp-exporter"
check memhp "$build/bin/memhp"
for sub in trace doctor lab ab compare report count-adds; do
	check "memhp-$sub" "$build/bin/memhp" "$sub"
done
check memhp-agent "$build/bin/memhp-agent"
check memhp-hog "$build/bin/memhp-hog"
exit $fail
