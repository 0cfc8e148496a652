#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, then runs the unit
# tier (fast, no VM) and the VM tier (real guests under QEMU TCG; guest
# kernels are fetched into the cache on first use). Extra arguments go to
# both ctest runs (e.g. -R qmp, --output-on-failure is already on).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_BUILD_DIR:-$root/build}
"$root/scripts/install-deps.sh"
MEMHP_BUILD_DIR=$build "$root/scripts/build.sh"
cd "$build"
echo "memhp: unit tests" >&2
ctest -L unit --output-on-failure -j"$(nproc)" "$@"
echo "memhp: VM tests (QEMU guests under TCG)" >&2
ctest -L vm --output-on-failure -j"${MEMHP_VM_JOBS:-2}" "$@"
