#!/bin/busybox sh
# /init of the VM test's initramfs (PID 1): mounts what libfido2 and authd
# need, loads the HID modules, runs /guest-test.sh and powers off. Every
# check prints "PASS name" or "FAIL name"; the host test reads the serial log.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# The kernel does not mount devtmpfs for an initramfs; devtmpfs creates
# /dev/uhid and /dev/hidrawN without udev.
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /root
exec </dev/console >/dev/console 2>&1
echo "INIT: kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)s"
for m in hid uhid hid-generic; do
	insmod /lib/modules/$m.ko || echo "FAIL insmod-$m"
done
sh /guest-test.sh
echo "INIT: done, uptime $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
