#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# memhp guest init (PID 1 of the lab's initramfs).
# Loads the virtio/9p modules listed in /modules.list, builds a root at /host
# from the host's read-only 9p shares (what the guest runs, never the host's
# whole root), prepares the usual pseudo file systems inside it, and starts
# the memhp guest agent from the host's build tree (chrooted), talking to the
# host over a virtio-serial port.
# Any failure is printed to the console with a "memhp-init:" prefix, which the
# host shows in its error message, and the guest powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys

fail() {
	echo "memhp-init: FATAL: $*"
	sleep 1
	poweroff -f
}

arg() { # value of memhp.$1= on the kernel command line
	for w in $(cat /proc/cmdline); do
		case "$w" in "memhp.$1="*) echo "${w#*=}"; return ;; esac
	done
}

echo "memhp-init: loading modules"
while read -r m; do
	[ -n "$m" ] || continue
	insmod "/lib/modules/$m" || fail "insmod $m failed"
done </modules.list

# Networking only when asked (memhp.net=1): QEMU user networking, guest
# address 10.0.2.15, reachable from the host through forwarded ports.
if [ "$(arg net)" = 1 ]; then
	echo "memhp-init: bringing up the network"
	while read -r m; do
		[ -n "$m" ] || continue
		insmod "/lib/modules/$m" || fail "insmod $m failed"
	done </modules.net.list
	ip link set lo up || fail "cannot bring up lo"
	ip link set eth0 up || fail "no eth0: is the virtio-net device there?"
	ip addr add 10.0.2.15/24 dev eth0 || fail "cannot address eth0"
	ip route add default via 10.0.2.2 2>/dev/null
fi

# The host's shares (lab/src/shares.cpp): /usr, a staged /etc, the directory
# of memhp's binaries, the kernel's modules. The table on the meta share says
# where each goes; each is the read-only lower layer of an overlay whose
# writes land in guest RAM, on a tmpfs root. Nothing else of the host is seen.
mkdir -p /meta /lower /rw /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro memhpmeta /meta ||
	fail "cannot mount the share table over 9p (is -virtfs mount_tag=memhpmeta given?)"
[ -r /meta/shares ] || fail "the meta share holds no share table"
mount -t tmpfs -o mode=0755 tmpfs /host || fail "tmpfs for the guest's root"
mount -t tmpfs tmpfs /rw || fail "tmpfs for the overlays"
for d in proc sys dev run tmp var/tmp root; do mkdir -p "/host/$d"; done
chmod 1777 /host/tmp /host/var/tmp
n=0
while read -r kind a b; do
	case "$kind" in
	link) ln -s "$b" "/host/$a" || fail "cannot link /$a to $b" ;;
	share)
		n=$((n + 1))
		mkdir -p "/lower/$n" "/rw/$n/upper" "/rw/$n/work" "/host$b" || fail "cannot make room for $b"
		mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose "$a" "/lower/$n" ||
			fail "cannot mount the host's $b over 9p (share $a)"
		mount -t overlay overlay -o "lowerdir=/lower/$n,upperdir=/rw/$n/upper,workdir=/rw/$n/work" "/host$b" ||
			fail "cannot mount the overlay over $b"
		;;
	*) fail "bad line in the share table: $kind $a $b" ;;
	esac
done </meta/shares
[ "$n" -gt 0 ] || fail "the share table names no share"
mount -t tmpfs tmpfs /host/run || fail "tmpfs on /run"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts 2>/dev/null; mount -t devpts devpts /host/dev/pts 2>/dev/null
mount -t tracefs tracefs /host/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
mount -t bpf bpf /host/sys/fs/bpf 2>/dev/null
echo 1 >/proc/sys/kernel/printk 2>/dev/null

port=
for p in /sys/class/virtio-ports/*; do
	[ "$(cat "$p/name" 2>/dev/null)" = memhp.agent ] && port=/dev/${p##*/}
done
[ -n "$port" ] || fail "virtio-serial port memhp.agent not found"

agent=$(arg agent)
[ -n "$agent" ] || fail "no memhp.agent= on the kernel command line"
[ -x "/host$agent" ] || fail "agent $agent is not executable in the host tree"

cwd=$(arg cwd)
# The host's working directory, empty unless a share holds it: commands run there.
[ -n "$cwd" ] && mkdir -p "/host$cwd" 2>/dev/null
echo "memhp-init: starting agent $agent on $port"
chroot /host "$agent" --port "$port" --cwd "$cwd" &

# An interactive shell on the console, for `memhp lab --keep`.
while true; do
	setsid cttyhack chroot /host /bin/sh -l
	sleep 1
done
