#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian package: memhp_<version>_<arch>.deb in $MEMHP_PKG_DIR
# (default build-pkg/packages), from a Release-with-debug-info build with
# prefix /usr and neither tests nor benchmarks (build-pkg/, or
# $MEMHP_PKG_BUILD_DIR), then checks it with lintian. Prints the .deb's path
# on stdout; exits non-zero when the build, CPack or lintian (errors) fails.
#   MEMHP_WERROR=ON        warnings as errors (CI)
#   MEMHP_PKG_BUILD_DIR    the build tree (default build-pkg/)
#   MEMHP_NO_LINTIAN=1     skip lintian (the package test runs it itself)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MEMHP_PKG_BUILD_DIR:-$root/build-pkg}
"$root/scripts/install-deps.sh"
args=(-DCMAKE_INSTALL_PREFIX=/usr -DMEMHP_BUILD_TESTS=OFF -DMEMHP_BUILD_BENCH=OFF)
# A tree configured earlier with other settings is put right first.
[ -f "$build/CMakeCache.txt" ] && cmake "${args[@]}" "$build" >/dev/null
echo "memhp: building the package's binaries in $build" >&2
MEMHP_BUILD_DIR=$build MEMHP_CMAKE_ARGS="${args[*]}" "$root/scripts/build.sh"
echo "memhp: cpack -G DEB" >&2
log=$build/cpack.log
if ! (cd "$build" && cpack -G DEB >"$log" 2>&1); then
	tail -30 "$log" >&2
	echo "memhp: cpack failed (log: $log)" >&2
	exit 1
fi
deb=$(ls -t "$build"/packages/memhp_*.deb | head -1)
if [ -z "${MEMHP_NO_LINTIAN:-}" ]; then
	echo "memhp: lintian $deb" >&2
	# Errors fail; warnings are printed. Overrides, each with its reason, are
	# in packaging/lintian-overrides (installed with the package).
	lintian --fail-on error --tag-display-limit 0 "$deb" >&2
fi
echo "memhp: $(du -h "$deb" | cut -f1) $(basename "$deb")" >&2
echo "$deb"
