#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# Builds memhp's patched lab kernel: a series of this folder (6.1/ or 7.2/)
# applied to the Debian source its `source` file pins, configured from
# tinyconfig + the series' lab.config (everything built in, no modules),
# make -j2 bzImage. The result is cached outside the repo, keyed by source
# version + patches + fragment:
#   ${MEMHP_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/memhp}/patched-kernel/<version>-<key>/{bzImage,config,build.log}
#
# usage: kernel-patches/build.sh [--series 6.1|7.2] [--unpatched] [--print-dir | --check | --force] [-j N]
#   --series V   which series (a sub-folder here): 6.1 (default, the lab's
#                `--kernel patched`) or 7.2 (`--kernel patched-7.2`)
#   --unpatched  the same source and lab.config without the series' patches
#                (`--kernel unpatched-7.2`): the baseline for what the events
#                cost (bench/event-cost.sh); its own cache entry
#   (none)       build if the cache entry is missing; print the entry's dir
#   --print-dir  print the entry's dir for the current inputs; exit 0 if it
#                is built, 3 if not (builds nothing)
#   --check      quick checks: the series applies to the pristine source
#                (dry run) and scripts/checkpatch.pl --strict is clean;
#                --check-apply and --check-style run one of the two
#   --force      rebuild even if the entry exists
#   -j N         make jobs (default 2)
# Progress goes to stderr ("memhp-kernel: ..."), the make output to the
# entry's build.log. Concurrent runs of one source version wait for each
# other (flock); the two series use separate trees, entries and locks.
# A source from a suite other than the system's (7.2: sid) is fetched
# through an apt configuration of memhp's own under the cache
# (MEMHP_DEBIAN_MIRROR, default http://deb.debian.org/debian).
set -euo pipefail

kdir=$(cd "$(dirname "$0")" && pwd)
cache=${MEMHP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/memhp}
top=$cache/patched-kernel
jobs=2
mode=build
series_name=6.1
unpatched=0
while [ $# -gt 0 ]; do
	case "$1" in
	--series)
		[ $# -ge 2 ] || { echo "memhp-kernel: --series needs a value (6.1 or 7.2)" >&2; exit 2; }
		series_name=$2; shift ;;
	--series=*) series_name=${1#--series=} ;;
	--unpatched) unpatched=1 ;;
	--print-dir) mode=print ;;
	--check) mode=check checks="apply style" ;;
	--check-apply) mode=check checks=apply ;;
	--check-style) mode=check checks=style ;;
	--force) mode=force ;;
	-j) jobs=$2; shift ;;
	-j*) jobs=${1#-j} ;;
	-h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "memhp-kernel: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

say() { echo "memhp-kernel: $*" >&2; }
die() { echo "memhp-kernel: error: $*" >&2; exit 1; }

# The series' folder and its source pin ("key value" lines).
known=$(cd "$kdir" && for d in */; do [ -f "$d/source" ] && printf '%s ' "${d%/}"; done)
case "$series_name" in
*/* | .* | '') die "unknown series '$series_name': use one of: $known" ;;
esac
here=$kdir/$series_name
[ -f "$here/series" ] && [ -f "$here/source" ] ||
	die "unknown series '$series_name' (no $here/series or source): use one of: $known"
pin() {
	local v
	v=$(awk -v k="$1" '$1 == k { print $2; exit }' "$here/source")
	[[ $v =~ ^[A-Za-z0-9.+~:-]+$ ]] || die "$here/source: no valid '$1' line"
	echo "$v"
}
SRC_PACKAGE=$(pin package)
SRC_VERSION=$(pin version)
SRC_SUITE=$(pin suite)
SRC_DIR_NAME=$SRC_PACKAGE

mapfile -t series < <(grep -v '^\s*\(#\|$\)' "$here/series")
[ ${#series[@]} -gt 0 ] || die "$here/series lists no patches"
for p in "${series[@]}"; do [ -f "$here/$p" ] || die "patch $p listed in series is missing"; done
[ $unpatched = 1 ] && [ $mode = check ] && die "--unpatched builds the baseline; --check checks the patches"

# The cache key: source version + the series (names and contents) + fragment.
key=$(
	{
		echo "$SRC_PACKAGE $SRC_VERSION"
		if [ $unpatched = 1 ]; then
			echo "unpatched"
		else
			for p in "${series[@]}"; do echo "$p"; cat "$here/$p"; done
		fi
		cat "$here/lab.config"
	} | sha256sum | cut -c1-16
)
entry=$top/$SRC_VERSION-$key
if [ $unpatched = 1 ]; then
	entry=$top/$SRC_VERSION-unpatched-$key
	series=() # the same tree and object dir, nothing applied
fi

if [ $mode = print ]; then
	echo "$entry"
	[ -f "$entry/bzImage" ] && exit 0 || exit 3
fi

need() { command -v "$1" >/dev/null || die "$1 is missing ($2): run scripts/install-deps.sh"; }

# apt-get for the pinned suite: the system's own if it is the system's
# suite, else a configuration of memhp's own under the cache (own lists, own
# sources.list; the archive keyring checks what it fetches).
apt_for_suite() {
	local system
	system=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
	if [ "$SRC_SUITE" = "$system" ]; then
		apt_args=()
		return
	fi
	local d=$cache/apt/$SRC_SUITE mirror=${MEMHP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
	[[ $mirror =~ ^https?://[A-Za-z0-9./:_~-]+$ ]] || die "MEMHP_DEBIAN_MIRROR '$mirror' is not an http(s) URL"
	[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] ||
		die "/usr/share/keyrings/debian-archive-keyring.gpg is missing (Debian package debian-archive-keyring)"
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SRC_SUITE main" >"$d/sources.list.new"
	mv "$d/sources.list.new" "$d/sources.list"
	apt_args=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache")
	if ! ls "$d/lists/"*_Packages >/dev/null 2>&1; then
		say "fetching the package lists of Debian $SRC_SUITE into $d (memhp's own apt configuration)"
		apt-get "${apt_args[@]}" update -q >&2 || die "apt-get update of Debian $SRC_SUITE ($mirror) failed: check the network or set MEMHP_DEBIAN_MIRROR"
	fi
}

# The pinned source tarball: /usr/src's if the installed package is the pin,
# else the pinned .deb fetched with apt-get download into the cache.
tarball() {
	local installed
	installed=$(dpkg-query -W -f='${Version}' "$SRC_PACKAGE" 2>/dev/null || true)
	if [ "$installed" = "$SRC_VERSION" ] && [ -f /usr/src/$SRC_DIR_NAME.tar.xz ]; then
		echo /usr/src/$SRC_DIR_NAME.tar.xz
		return
	fi
	local t=$top/src/$SRC_PACKAGE-$SRC_VERSION.tar.xz
	if [ ! -f "$t" ]; then
		say "fetching $SRC_PACKAGE=$SRC_VERSION ($SRC_SUITE) with apt-get download (installed: ${installed:-none})"
		local tmp apt_args
		apt_for_suite
		tmp=$(mktemp -d "$top/src/fetch.XXXXXX")
		chmod 777 "$tmp" # apt's _apt sandbox user writes the .deb
		if ! (cd "$tmp" && apt-get ${apt_args[@]+"${apt_args[@]}"} download -q "$SRC_PACKAGE=$SRC_VERSION" >&2) &&
			[ ${#apt_args[@]} -gt 0 ]; then
			say "not in the cached $SRC_SUITE lists: refreshing them"
			apt-get "${apt_args[@]}" update -q >&2 || true
			(cd "$tmp" && apt-get "${apt_args[@]}" download -q "$SRC_PACKAGE=$SRC_VERSION" >&2) || true
		fi
		ls "$tmp"/*.deb >/dev/null 2>&1 || {
			rm -rf "$tmp"
			die "cannot fetch $SRC_PACKAGE=$SRC_VERSION from Debian $SRC_SUITE: run 'apt-get update' (for the system's suite), or if Debian dropped this version, move the 'version' line of $here/source to one 'apt-cache policy $SRC_PACKAGE' lists and check that the series still applies (--series $series_name --check)"
		}
		dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp" ./usr/src/$SRC_DIR_NAME.tar.xz
		mv "$tmp/usr/src/$SRC_DIR_NAME.tar.xz" "$t"
		rm -rf "$tmp"
	fi
	echo "$t"
}

mkdir -p "$top/src"
# One lock per source version, and one for its checks (which use their own
# pristine subset, so they need not wait for a build; a tarball both fetch
# lands with an atomic mv).
lock=$top/.lock-$SRC_VERSION
[ $mode = check ] && lock=$top/.lock-check-$SRC_VERSION
exec 9>"$lock"
if ! flock -n 9; then
	say "another build or check of $SRC_VERSION holds $lock; waiting"
	flock 9
fi

if [ $mode = check ]; then
	need perl "Debian package perl"
	need patch "Debian package patch"
	# A pristine subset of the tree: the files the series touches plus what
	# checkpatch.pl reads. Never modified (dry runs only), so cached.
	pristine=$top/src/check-$SRC_VERSION
	if [ ! -f "$pristine/.complete" ]; then
		t=$(tarball)
		say "extracting the files the checks need from $(basename "$t")"
		rm -rf "$pristine" && mkdir -p "$pristine"
		tar -xJf "$t" -C "$pristine" --strip-components=1 \
			$SRC_DIR_NAME/scripts $SRC_DIR_NAME/MAINTAINERS $SRC_DIR_NAME/mm \
			$SRC_DIR_NAME/drivers/base $SRC_DIR_NAME/include
		touch "$pristine/.complete"
	fi
	fail=0
	# The whole series in order, on one scratch copy of the touched files.
	scratch=$(mktemp -d)
	trap 'rm -rf "$scratch"' EXIT
	cp -a "$pristine/mm" "$pristine/drivers" "$pristine/include" "$pristine/MAINTAINERS" "$scratch/"
	for p in "${series[@]}"; do
		[[ $checks == *apply* ]] || break
		if out=$(patch -d "$scratch" -p1 --dry-run -F0 -N <"$here/$p" 2>&1) &&
			patch -d "$scratch" -p1 -F0 -N -s <"$here/$p" >/dev/null 2>&1; then
			if grep -qi 'offset\|fuzz' <<<"$out"; then
				say "FAIL: $p applies only with offset/fuzz:"; echo "$out" >&2; fail=1
			else
				say "ok: $p applies cleanly to $SRC_PACKAGE $SRC_VERSION"
			fi
		else
			say "FAIL: $p does not apply to $SRC_PACKAGE $SRC_VERSION:"; echo "$out" >&2; fail=1
		fi
	done
	# --no-tree: the subset is not a whole tree (checkpatch then skips only
	# the git-history checks and the SPDX license lookup).
	for p in "${series[@]}"; do
		[[ $checks == *style* ]] || break
		if out=$(cd "$pristine" && perl scripts/checkpatch.pl --strict --no-tree -q "$here/$p" 2>&1) &&
			! grep -q 'Traceback' <<<"$out"; then
			say "ok: $p is checkpatch --strict clean"
		else
			say "FAIL: checkpatch --strict on $p:"; echo "$out" >&2; fail=1
		fi
	done
	exit $fail
fi

if [ $mode = build ] && [ -f "$entry/bzImage" ]; then
	echo "$entry"
	exit 0
fi

# ARCH stays the host's (x86; lab.config sets 64BIT): the lab boots x86-64.
[ "$(uname -m)" = x86_64 ] || die "the lab kernel is x86-64: build it on an x86_64 host"
for t in make gcc flex bison bc pahole perl patch; do need $t "a kernel build dependency"; done
[ -f /usr/include/openssl/opensslv.h ] || die "OpenSSL headers are missing (libssl-dev): run scripts/install-deps.sh"
[ -f /usr/include/libelf.h ] || die "libelf headers are missing (libelf-dev): run scripts/install-deps.sh"

# One source tree and one object dir, reused across builds: the previous
# series is reverse-applied and the new one applied, so make rebuilds only
# what changed (touched files get a new mtime). Anything odd: start afresh.
src=$top/src/$SRC_DIR_NAME-$SRC_VERSION
obj=$top/obj-$SRC_VERSION
start=$(date +%s)
[ -L "$src" ] && [ ! -e "$src" ] && rm -f "$src"  # a dangling link: start afresh
[ -L "$obj" ] && [ ! -e "$obj" ] && rm -f "$obj"
if [ -f "$src/.memhp-applied/series" ]; then
	say "reverting the previously applied series in $src"
	mapfile -t old < <(cat "$src/.memhp-applied/series")
	for ((i = ${#old[@]} - 1; i >= 0; i--)); do
		patch -d "$src" -p1 -R -s -F0 <"$src/.memhp-applied/${old[i]}" >/dev/null 2>&1 || {
			say "cannot revert ${old[i]}: extracting a fresh tree"
			rm -rf "$src" "$obj"
			break
		}
	done
	rm -rf "$src/.memhp-applied"
elif [ -d "$src" ]; then
	rm -rf "$src" # interrupted extraction
fi
if [ ! -d "$src" ]; then
	t=$(tarball)
	say "extracting $(basename "$t") into $top/src (about 1.3 GB, ~30 s)"
	mkdir -p "$src.partial"
	tar -xJf "$t" -C "$src.partial" --strip-components=1
	mv "$src.partial" "$src"
fi
mkdir -p "$src/.memhp-applied"
for p in "${series[@]}"; do
	say "applying $p"
	patch -d "$src" -p1 -s -F0 -N <"$here/$p" || die "$p does not apply to $SRC_PACKAGE $SRC_VERSION (run $0 --series $series_name --check)"
	cp "$here/$p" "$src/.memhp-applied/"
	echo "$p" >>"$src/.memhp-applied/series"
done

mkdir -p "$obj" "$entry.partial"
log=$entry.partial/build.log
say "configuring: tinyconfig + $series_name/lab.config"
{
	make -C "$src" O="$obj" tinyconfig &&
		"$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$here/lab.config" &&
		make -C "$src" O="$obj" olddefconfig
} >"$log" 2>&1 || { tail -20 "$log" >&2; die "configuring failed (log: $log)"; }
# Every =y of the fragment must survive olddefconfig (a dependency missing
# would silently drop it).
missing=$(grep -o '^CONFIG_[A-Z0-9_]*=y' "$here/lab.config" | while read -r o; do
	grep -qx "$o" "$obj/.config" || echo "${o%=y}"
done)
[ -z "$missing" ] || die "lab.config options dropped by olddefconfig (unmet dependencies?): $missing"

say "building bzImage with make -j$jobs (a clean build takes ~5 min on 2 idle cores; log: $log)"
make -C "$src" O="$obj" -j"$jobs" bzImage >>"$log" 2>&1 &
mk=$!
trap 'kill $mk 2>/dev/null' EXIT INT TERM
while kill -0 $mk 2>/dev/null; do
	sleep 20
	kill -0 $mk 2>/dev/null || break
	say "  ... $(($(date +%s) - start)) s, $(grep -c '^  CC ' "$log" || true) files compiled, last: $(grep '^  [A-Z]' "$log" | tail -1 | awk '{print $2}')"
done
if ! wait $mk; then
	trap - EXIT INT TERM
	grep -E 'error|Error' "$log" | head -20 >&2 || true
	tail -10 "$log" >&2
	die "the kernel build failed (log: $log)"
fi
trap - EXIT INT TERM

cp "$obj/arch/x86/boot/bzImage" "$entry.partial/bzImage"
cp "$obj/.config" "$entry.partial/config"
release=$(cat "$obj/include/config/kernel.release")
took=$(($(date +%s) - start))
{
	echo "source $SRC_PACKAGE $SRC_VERSION"
	echo "series_version $series_name"
	echo "release $release"
	echo "series ${series[*]}"
	echo "build_seconds $took"
	echo "jobs $jobs"
} >"$entry.partial/memhp-kernel.txt"
rm -rf "$entry"
mv "$entry.partial" "$entry"
say "built $release in $took s: $entry/bzImage"
echo "$entry"
