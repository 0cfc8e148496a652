#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every tracked source carries the SPDX line LICENSE asks for: user space
# Apache-2.0, BPF programs and their private headers GPL-2.0-only, headers
# shared by BPF and user space (bpf/*.h) GPL-2.0-only OR Apache-2.0,
# kernel-patches/ GPL-2.0-only as the kernel it patches.
# Lists each file that lacks it or names another license; exit 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r f; do
	case "$f" in
	bpf/vmlinux.h) continue ;; # generated from BTF (scripts/gen-vmlinux-h.sh)
	kernel-patches/*) want="GPL-2.0-only" ;;
	*.bpf.c | bpf/*.bpf.h) want="GPL-2.0-only" ;;
	bpf/*.h) want="GPL-2.0-only OR Apache-2.0" ;;
	*) want="Apache-2.0" ;;
	esac
	line=$(head -n 2 -- "$f" | grep -m1 -o 'SPDX-License-Identifier: [^*]*' | sed 's/ *$//' || true)
	if [ "$line" != "SPDX-License-Identifier: $want" ]; then
		echo "memhp: $f: want 'SPDX-License-Identifier: $want' in its first two lines, have '${line:-nothing}'" >&2
		bad=$((bad + 1))
	fi
done < <(git ls-files '*.cpp' '*.hpp' '*.c' '*.h' '*.sh')
if [ $bad -gt 0 ]; then
	echo "memhp: $bad file(s) without the right SPDX line (see LICENSE)" >&2
	exit 1
fi
echo "memhp: every source has its SPDX line"
