#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, then runs the quick
# tier (kernel-patches/ checks), the unit tier (fast, no VM) and the VM tier
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
# The VM tier boots the patched kernel too: build it first if its cache entry
# is missing (about 5 min on 2 cores, once per version of kernel-patches/).
"$root/kernel-patches/build.sh" >/dev/null
echo "memhp: VM tests (QEMU guests under TCG)" >&2
ctest -L vm --output-on-failure -j"${MEMHP_VM_JOBS:-2}" "$@"
