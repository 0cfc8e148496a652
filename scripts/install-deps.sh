#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages memhp needs, if any are missing. Idempotent:
# when everything is there it only checks (about 0.1 s) and prints nothing.
# Needs root (or sudo) only when something must be installed.
set -euo pipefail

packages=(
	# build
	cmake make g++ pkg-config clang llvm ccache
	# the quick tier's habits: quick.format (clang-format) and quick.lint (clang-tidy)
	clang-format clang-tidy
	# fuzzing (scripts/fuzz.sh): libFuzzer and the sanitizer runtimes of clang 14
	libclang-rt-14-dev
	# BPF: libbpf + skeletons, ELF/zlib for libbpf, libcap for privilege checks
	libbpf-dev bpftool libelf-dev zlib1g-dev libcap-dev
	# the start-up baseline of bench/micro (memhp_probe_bench), run in the guest
	bpftrace
	# libraries: JSON, CLI parsing, metrics, tests, benchmarks
	nlohmann-json3-dev libcli11-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
	# the QEMU lab: emulator, initramfs parts, kernel-package tools
	qemu-system-x86 busybox-static cpio kmod xz-utils zstd socat
	# dax/kmem in the lab (memhp lab --dax): the guest runs ndctl from the host's root
	ndctl
	# memhp ab / compare: statistics (Mann-Whitney U), plots, schema check in tests
	libalglib-dev gnuplot-nox python3-jsonschema
	# exporter tests and benchmarks: Prometheus server + promtool, HTTP client, HTTP load (panels render with gnuplot)
	prometheus curl wrk
	# the patched lab kernels (kernel-patches/build.sh): Debian's 6.1 source, kernel build tools, pahole for
	# BTF; the archive keyring checks the 7.2 source build.sh fetches from sid with an apt configuration of its own
	linux-source-6.1 dwarves bc flex bison libssl-dev patch debian-archive-keyring
	# shipping: sd_notify for the exporter's unit, the .deb (CPack + dpkg-shlibdeps), its checks, man pages
	libsystemd-dev systemd dpkg-dev fakeroot lintian file help2man man-db
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

# Guest kernels are fetched with apt-get download: that needs package lists.
lists_missing=0
compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || lists_missing=1

[ ${#missing[@]} -eq 0 ] && [ $lists_missing -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null; then
		sudo=(sudo)
	else
		echo "memhp: missing Debian packages: ${missing[*]}" >&2
		echo "memhp: run scripts/install-deps.sh as root to install them" >&2
		exit 1
	fi
fi

echo "memhp: installing Debian packages: ${missing[*]:-(none; refreshing package lists)}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null || {
	echo "memhp: apt-get update failed: check the network and /etc/apt/sources.list" >&2
	exit 1
}
if [ ${#missing[@]} -gt 0 ]; then
	if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/memhp-apt.log 2>&1; then
		tail -20 /tmp/memhp-apt.log >&2
		echo "memhp: apt-get install failed (full log: /tmp/memhp-apt.log)" >&2
		exit 1
	fi
fi
echo "memhp: packages ready" >&2
