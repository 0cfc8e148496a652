#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The unit tier again, built with sanitizers in a build directory of its own
# (scripts/test.sh runs it right after the plain unit tier):
#   scripts/sanitize.sh          # AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/sanitize.sh thread   # ThreadSanitizer over the exporter's tests
#   scripts/sanitize.sh vm       # the host side of one VM suite (vm.MemmapOff)
#                                # under ASan + UBSan; the guest runs the main
#                                # build's memhp-agent and memhp, uninstrumented
# Only the test binary and what it runs are built, with ccache: for ASan the
# unit tier (memhp_unit_tests, memhp, memhp-exporter), for TSan the
# exporter's tests alone (memhp_tsan_tests: scrapes against the consumer). Any sanitizer report fails the test that triggered it:
# the code is built with -fno-sanitize-recover=all and the runtime options
# below halt on the first error. Extra arguments go to ctest.
#   MEMHP_BUILD_DIR       the main build; the sanitizer builds go to
#                         $MEMHP_BUILD_DIR/asan and $MEMHP_BUILD_DIR/tsan
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
kind=address
if [ "${1:-}" = thread ] || [ "${1:-}" = address ] || [ "${1:-}" = vm ]; then
	kind=$1
	shift
fi
case $kind in
address)
	dir=$build/asan
	sanitize=address,undefined
	target=memhp_unit_tests
	# Every gtest test of the unit tier (rules.*, unit.* are promtool and
	# systemd-analyze checks of files: nothing of ours runs under a sanitizer).
	select=(-L unit -E '^(rules|unit|quick)\.')
	what="unit tests"
	;;
vm)
	# QMP and agent clients, the guest's lifecycle, the console and trace
	# readers: the code that parses what a guest and QEMU send.
	dir=$build/asan
	sanitize=address,undefined
	target=lab_vm_test
	select=(-R '^vm\.MemmapOff$')
	what="the host side of vm.MemmapOff"
	[ -x "$build/bin/memhp-agent" ] || { echo "memhp: no $build/bin/memhp-agent: run scripts/build.sh first" >&2; exit 2; }
	export MEMHP_AGENT=$build/bin/memhp-agent
	;;
thread)
	dir=$build/tsan
	sanitize=thread
	target=memhp_tsan_tests
	select=(-L tsan)
	what="the exporter's tests"
	;;
esac
echo "memhp: $what under -fsanitize=$sanitize (build in $dir)" >&2
MEMHP_BUILD_DIR=$dir \
	MEMHP_CMAKE_ARGS="-DMEMHP_SANITIZE=$sanitize -DMEMHP_BUILD_BENCH=OFF ${MEMHP_CMAKE_ARGS:-}" \
	"$root/scripts/build.sh" "$target"
# halt_on_error: the first report ends the process with exit 1, so ctest
# counts the test failed. LeakSanitizer is on (ASan's default) for our code.
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export LSAN_OPTIONS=suppressions=$root/tests/unit/lsan.supp:print_suppressions=0
cd "$dir"
ctest "${select[@]}" --output-on-failure -j"$(nproc)" "$@"
