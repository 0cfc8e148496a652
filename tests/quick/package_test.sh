#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Debian package, as CI builds it: scripts/package.sh builds it (its own
# build tree, prefix /usr), then this checks that
#  - lintian finds no error (warnings are shown; overrides carry reasons),
#  - it holds the binaries, the unit, man pages for every command, the
#    dashboards and rules, the docs, copyright and changelog,
#  - its Depends come from dpkg-shlibdeps (libbpf, libc, libstdc++ ...),
#  - unpacked into a temporary root (dpkg -x) its binaries run --version and
#    memhp doctor --json from there.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
deb=$(MEMHP_NO_LINTIAN=1 "$root/scripts/package.sh")
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

echo "== lintian" >&2
lintian --fail-on error --tag-display-limit 0 "$deb" >&2 || bad "lintian reports errors"

echo "== contents" >&2
list=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/memhp ./usr/bin/memhp-exporter ./usr/bin/memhp-agent ./usr/bin/memhp-hog \
	./usr/lib/systemd/system/memhp-exporter.service \
	./usr/share/memhp/dashboards/grafana/memhp.json \
	./usr/share/memhp/dashboards/prometheus/memhp-alerts.rules.yml \
	./usr/share/memhp/dashboards/prometheus/memhp-recording.rules.yml \
	./usr/share/doc/memhp/metrics.md ./usr/share/doc/memhp/copyright ./usr/share/doc/memhp/changelog.gz \
	./usr/share/man/man1/memhp.1.gz ./usr/share/man/man1/memhp-exporter.1.gz; do
	grep -qxF "$f" <<<"$list" || bad "$f missing from the package"
done
for sub in trace doctor lab ab compare report count-adds; do
	grep -qxF "./usr/share/man/man1/memhp-$sub.1.gz" <<<"$list" || bad "no man page for memhp $sub"
done
grep -q '/tests/' <<<"$list" && bad "rule tests were packaged"

echo "== control" >&2
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends" >&2
for lib in libbpf1 libc6 libstdc++6 libsystemd0 libcap2; do
	grep -q "$lib" <<<"$depends" || bad "Depends lacks $lib"
done
grep -q 'memhp-exporter' <<<"$(dpkg-deb -f "$deb" Description)" || bad "description does not name memhp-exporter"

echo "== unpacked" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg -x "$deb" "$tmp"
version=$(dpkg-deb -f "$deb" Version)
[ "$("$tmp/usr/bin/memhp" --version)" = "memhp $version" ] || bad "memhp --version"
[ "$("$tmp/usr/bin/memhp-exporter" --version)" = "memhp-exporter $version" ] || bad "memhp-exporter --version"
grep -q "ExecStart=/usr/bin/memhp-exporter " "$tmp/usr/lib/systemd/system/memhp-exporter.service" ||
	bad "the unit does not start /usr/bin/memhp-exporter"
# doctor runs from the unpacked tree; on a host without BPF tracing it
# exits 1 (essentials missing), never 2 (usage) or a crash.
rc=0
"$tmp/usr/bin/memhp" doctor --json >"$tmp/doctor.json" 2>"$tmp/doctor.err" || rc=$?
[ $rc -le 1 ] || bad "memhp doctor exited $rc: $(cat "$tmp/doctor.err")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["schema"]==1 and len(d["checks"])>=15' \
	"$tmp/doctor.json" || bad "memhp doctor --json is not its JSON"
# A man page renders and names the flags of --help.
zcat "$tmp/usr/share/man/man1/memhp-doctor.1.gz" | grep -q -- 'root' || bad "memhp-doctor(1) lacks --root"
echo "package: $(du -h "$deb" | cut -f1) $(basename "$deb")" >&2
exit $fail
