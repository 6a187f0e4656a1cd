#!/usr/bin/env bash
# Installs the Debian packages the test levels need, only those missing.
# Needs root (or sudo) when something is missing; says so plainly otherwise.
set -euo pipefail

declare -A want=(
  [redis-server]=redis-server
  [redis-sentinel]=redis-sentinel
  [iptables]=iptables
  [nft]=nftables
  [debootstrap]=debootstrap
  [systemd-nspawn]=systemd-container
  [sshd]=openssh-server
  [ssh]=openssh-client
  [ip]=iproute2
  [ps]=procps
  [promtool]=prometheus
  [chromium]=chromium
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${want[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-debian-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install-debian-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
