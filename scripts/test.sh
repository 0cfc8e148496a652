#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: installs what is missing, builds, then runs the quick
# tier (kernel-patches/ checks), the unit tier (fast, no VM; then again under
# sanitizers: scripts/sanitize.sh) and the VM tier
# (real guests under QEMU TCG; guest kernels are fetched, and the patched
# kernel built, into the cache on first use). Extra arguments go to every
# ctest run (e.g. -R qmp, --output-on-failure is already on).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
"$root/scripts/install-deps.sh"
MEMHP_BUILD_DIR=$build "$root/scripts/build.sh"
cd "$build"
echo "memhp: quick checks (kernel-patches apply and are checkpatch clean)" >&2
ctest -L quick --output-on-failure "$@"
echo "memhp: unit tests" >&2
ctest -L unit --output-on-failure -j"$(nproc)" "$@"
# The unit tier again under ASan + UBSan, and the exporter's tests under
# TSan, each in a build dir of its own ($build/asan, $build/tsan; ccache makes
# a warm one a matter of seconds). Skipped when the selection ("$@") holds no
# unit test, e.g. `scripts/test.sh -R vm.Trace61`.
units=$(ctest -L unit -N "$@" | sed -n 's/^Total Tests: *//p')
if [ "${units:-0}" -gt 0 ]; then
	MEMHP_BUILD_DIR=$build "$root/scripts/sanitize.sh" address "$@"
	MEMHP_BUILD_DIR=$build "$root/scripts/sanitize.sh" thread "$@"
fi
# The VM tier boots the patched kernels too: build each one the selected VM
# tests boot first, if its cache entry is missing (a cold build is about
# 10 min (6.1) and 12 min (7.2) of make -j2 on 2 idle cores, once per
# version of its kernel-patches/ series). A series none of the selected
# tests boots is not built (e.g. `scripts/test.sh -R vm.Trace61`).
selected=$(ctest -L vm -N "$@" | sed -n 's/^ *Test *#[0-9]*: *//p')
for s in 6.1 7.2; do
	case $s in
	6.1) pattern='^vm\.PatchedMemmap' ;;
	7.2) pattern='^vm\.Patched72' ;;
	esac
	if grep -q "$pattern" <<<"$selected"; then
		if ! "$root/kernel-patches/build.sh" --series $s --print-dir >/dev/null; then
			echo "memhp: building the patched $s kernel for $(grep -c "$pattern" <<<"$selected") selected VM suites (cold: many minutes; progress below)" >&2
		fi
		"$root/kernel-patches/build.sh" --series $s >/dev/null
	fi
done
echo "memhp: VM tests (QEMU guests under TCG)" >&2
ctest -L vm --output-on-failure -j"${MEMHP_VM_JOBS:-2}" "$@"
# The host side of one VM suite again under ASan + UBSan (when selected).
if grep -qx 'vm\.MemmapOff' <<<"$selected"; then
	MEMHP_BUILD_DIR=$build "$root/scripts/sanitize.sh" vm
fi
