#!/usr/bin/env bash
# Build (once) a Debian bookworm root filesystem that boots real systemd under
# systemd-nspawn, for the deployment test bed.  The result is cached outside the
# repository, keyed by a hash of what goes into it, so CI in a fresh clone on the
# same machine reuses it; on a new machine it is rebuilt (a few minutes).
#
# The mirror is read from this machine's own apt sources; nothing here names a
# package registry.  Prints the path of the cached rootfs on stdout.
set -euo pipefail

CACHE=${RINGRIFT_TESTBED_CACHE:-/var/cache/ringrift-fleet-testbed}
SUITE=bookworm
PACKAGES=(
  systemd systemd-sysv dbus libpam-systemd openssh-server openssh-client
  python3 python3-apt python3-venv python3-pip redis-server redis-sentinel iproute2 iputils-ping sudo
  curl ca-certificates procps less
)
# Bump when the customisation below changes, so the cache key changes with it.
RECIPE_VERSION=4

die() { echo "build-rootfs: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap)"
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || die "debootstrap missing (make deps)"

key=$(printf '%s\n' "$SUITE" "$RECIPE_VERSION" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
target="$CACHE/rootfs-$key"
if [ -f "$target/.ringrift-testbed-ready" ]; then
  echo "$target"
  exit 0
fi

mirror_from_apt_sources() {
  local f
  # deb822 sources first (URIs: + Suites: in one stanza), then one-line sources.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      BEGIN { RS=""; FS="\n" }
      {
        uri=""; ok=0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
          if ($i ~ /^Suites:/ && $i ~ ("[ \t]" suite "([ \t]|$)")) ok = 1
        }
        if (ok && uri != "") { print uri; exit }
      }' "$f"
  done | head -n1
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" && $0 ~ (" " suite " ") { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f"
  done | head -n1
}
mirror=$(mirror_from_apt_sources | head -n1)
[ -n "$mirror" ] || die "no $SUITE mirror found in /etc/apt/sources.list{,.d}"

mkdir -p "$CACHE/debs"
exec 9>"$CACHE/.build.lock"
flock -w 1800 9 || die "another build holds $CACHE/.build.lock"
if [ -f "$target/.ringrift-testbed-ready" ]; then echo "$target"; exit 0; fi

work="$CACHE/.building-$key"
# An interrupted debootstrap leaves /proc (and /sys) mounted inside its target:
# unmount whatever is under it, deepest first, then remove it without ever
# crossing into a mount.
clean_work() {
  [ -d "$work" ] || return 0
  awk -v w="$work" '$2 == w || index($2, w "/") == 1 { print $2 }' /proc/mounts \
    | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$work"
}
clean_work
trap clean_work EXIT
echo "build-rootfs: debootstrap $SUITE from $mirror into $work (takes a few minutes)" >&2
include=$(IFS=,; echo "${PACKAGES[*]}")
timeout 1500 debootstrap --variant=minbase --include="$include" \
  --cache-dir="$CACHE/debs" "$SUITE" "$work" "$mirror" >"$CACHE/debootstrap-$key.log" 2>&1 \
  || { tail -n 30 "$CACHE/debootstrap-$key.log" >&2; die "debootstrap failed; log: $CACHE/debootstrap-$key.log"; }

# --- customise: a host ansible can log into as root with a key -----------------
rm -f "$work"/etc/ssh/ssh_host_*  # each container gets its own at boot
cat >"$work/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/ssh-hostkeys.service "$work/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
mkdir -p "$work/etc/ssh/sshd_config.d"
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' \
  >"$work/etc/ssh/sshd_config.d/testbed.conf"
# The stock redis-server and redis-sentinel units are the broker role's to
# configure (a Sentinel set on 3 or 5 hosts); keep them off until then.
rm -f "$work"/etc/systemd/system/multi-user.target.wants/redis-server.service \
  "$work"/etc/systemd/system/multi-user.target.wants/redis-sentinel.service
# Nothing in the container needs these, and they slow or fail boot without hardware.
for u in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  rm -f "$work/etc/systemd/system/"*.wants/"$u"
  ln -sf /dev/null "$work/etc/systemd/system/$u"
done
echo "LANG=C.UTF-8" >"$work/etc/default/locale"
: >"$work/etc/machine-id"
rm -rf "$work/var/cache/apt/archives/"*.deb "$work/var/lib/apt/lists/"*
touch "$work/.ringrift-testbed-ready"
mv "$work" "$target"
trap - EXIT
# Older recipes' root filesystems are dead weight now (a few hundred MB each).
for old in "$CACHE"/rootfs-*; do
  [ "$old" = "$target" ] || rm -rf --one-file-system "$old"
done
echo "$target"
