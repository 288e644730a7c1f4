#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks start as real servers, and those the
# dev cluster's real node runs (runc, CNI plugins, iptables for kube-proxy), and the browser the
# dashboard's tests drive (chromium, headless), if missing.
set -euo pipefail
declare -A wanted=([nginx]=nginx [prometheus]=prometheus [promtool]=prometheus [wrk]=wrk [openssl]=openssl
                  [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins [iptables]=iptables
                  [conntrack]=conntrack [nsenter]=util-linux [ip]=iproute2 [chromium]=chromium)
missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "$cmd" ] \
    || missing+=("${wanted[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
echo ">> installing Debian packages: $pkgs"
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps prometheus from pulling node-exporter and friends; the
# services it would start are not used (tests start their own servers on loopback).
$sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
for svc in nginx prometheus; do
  $sudo systemctl stop "$svc" 2>/dev/null || $sudo service "$svc" stop 2>/dev/null || true
done
