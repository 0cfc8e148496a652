#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fails when a compiled BPF object holds an atomic instruction that Linux
# 5.10's verifier rejects ("BPF_STX uses reserved fields"): anything but the
# plain atomic add (BPF_XADD, "lock *(u32/u64 *)(...) += r"). Fetching
# atomics (atomic_fetch_add/and/or/xor, xchg, cmpxchg) and the non-fetching
# and/or/xor arrived in 5.12.
#   bpf_no_fetch_atomics.sh LLVM_OBJDUMP OBJECT...
set -euo pipefail
objdump=$1
shift
[ $# -gt 0 ] || { echo "no BPF objects given" >&2; exit 2; }
bad=0
for obj in "$@"; do
	[ -f "$obj" ] || { echo "$obj is missing: build the project first" >&2; exit 2; }
	dis=$("$objdump" -d --no-show-raw-insn "$obj")
	lines=$(grep -c 'lock \*' <<<"$dis" || true)
	if grep -nE 'atomic_fetch|xchg|lock \*\([^)]*\) *[&|^]=' <<<"$dis" >&2; then
		echo "$obj: atomic instructions the 5.10 verifier rejects (above)" >&2
		bad=1
	else
		echo "$(basename "$obj"): $lines plain atomic adds, no fetching atomics"
	fi
done
exit $bad
