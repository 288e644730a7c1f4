#!/bin/sh
# mmdebstrap --customize-hook for every Debian-based image; $1 is the new root filesystem.
set -eu
root=$1
# The unprivileged user the images run as (the chart and the operator's pods pin uid 65532).
echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >>"$root/etc/passwd"
echo 'nonroot:x:65532:' >>"$root/etc/group"
install -d -o 65532 -g 65532 -m 0755 "$root/home/nonroot"
# Prometheus's working and storage directory (a volume in a pod; the image's own copy is empty).
if [ -x "$root/usr/bin/prometheus" ]; then
  install -d -o 65532 -g 65532 -m 0755 "$root/prometheus"
fi
# Logs of the build itself: they say nothing about the image and only change its bytes.
rm -f "$root"/var/log/dpkg.log "$root"/var/log/alternatives.log "$root"/var/log/apt/*.log
rm -rf "$root"/var/cache/debconf/*-old
