#!/usr/bin/env bash
# Start the deployment test bed: N Debian hosts booting real systemd under
# systemd-nspawn, each in its own network namespace, joined by a bridge that
# lives in a controller namespace (10.203.0.1).  Hosts are 10.203.0.11, .12, …
# and reachable over SSH as root with RUNDIR/id_ed25519, from the controller
# namespace only.  Nothing is addressed from the main namespace, where the range
# is blackholed for the lifetime of the test bed.
#
# Usage: up.sh RUNDIR [N]      (down.sh RUNDIR undoes everything; up.sh calls it
#                               itself when it fails half-way)
# Writes RUNDIR/testbed.env (names, addresses) for the caller.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
RUNDIR=${1:?usage: up.sh RUNDIR [N]}
N=${2:-3}
SUBNET=10.203.0.0/24
PREFIX=${RINGRIFT_TESTBED_PREFIX:-rrdep}
CTL_NS="$PREFIX-ctl"
BOOT_TIMEOUT=${RINGRIFT_TESTBED_BOOT_TIMEOUT:-120}

[ "$(id -u)" -eq 0 ] || { echo "up.sh: needs root" >&2; exit 1; }
[ "$N" -ge 1 ] && [ "$N" -le 9 ] || { echo "up.sh: N must be 1-9" >&2; exit 1; }
mkdir -p "$RUNDIR"
RUNDIR=$(cd "$RUNDIR" && pwd)

# One test bed per machine (fixed names and range): callers serialise on
# /run/lock/ringrift-deploy-testbed.lock (the pytest fixture holds it from up to
# down).  A test bed found here anyway was left by a run that died: tear it down,
# using the run directory it recorded, so its containers end by their PIDs.
ACTIVE=/run/ringrift-deploy-testbed.rundir
if ip netns list | grep -qw "$CTL_NS"; then
  stale=$(cat "$ACTIVE" 2>/dev/null || echo "$RUNDIR")
  echo "up.sh: stale test bed found (from $stale); tearing it down first" >&2
  "$HERE/down.sh" "$stale" "$N" || true
fi
echo "$RUNDIR" >"$ACTIVE"

trap 'rc=$?; if [ $rc -ne 0 ]; then echo "up.sh: failed (rc=$rc); tearing down" >&2; "$HERE/down.sh" "$RUNDIR" "$N"; fi' EXIT

ROOTFS=$("$HERE/build-rootfs.sh")

# Blackhole first, so nothing in the main namespace can ever reach the range.
ip route replace blackhole "$SUBNET"
echo "$SUBNET" >"$RUNDIR/blackhole"

ip netns add "$CTL_NS"
ip -n "$CTL_NS" link set lo up
ip -n "$CTL_NS" link add br0 type bridge
ip -n "$CTL_NS" addr add 10.203.0.1/24 dev br0
ip -n "$CTL_NS" link set br0 up

[ -f "$RUNDIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ringrift-testbed -f "$RUNDIR/id_ed25519"

hosts_lines="127.0.0.1 localhost"
for i in $(seq 1 "$N"); do hosts_lines+=$'\n'"10.203.0.1$i h$i"; done

{
  echo "CTL_NS=$CTL_NS"
  echo "SSH_KEY=$RUNDIR/id_ed25519"
  echo "ROOTFS=$ROOTFS"
  echo "N=$N"
} >"$RUNDIR/testbed.env"

# Each container runs in a cgroup of its own.  With no systemd on the host,
# nspawn puts a container in <its own cgroup>/payload, so containers started from
# one cgroup would share payload/system.slice and remove each other's unit
# cgroups while booting (units then fail with status=219/CGROUP; seen in CI).
# The hierarchies that matter are the writable ones systemd uses for its units:
# cgroup2 and the legacy name=systemd one.
cgroup_roots() {
  awk '{ split($0, p, " - "); split(p[1], a, " "); split(p[2], b, " ")
         if (b[1] == "cgroup2" || (b[1] == "cgroup" && b[3] ~ /(^|,)name=systemd(,|$)/)) print a[5] }' \
    /proc/self/mountinfo
}
CGROUP_ROOTS=$(cgroup_roots)
[ -n "$CGROUP_ROOTS" ] || { echo "up.sh: no cgroup2 or name=systemd hierarchy mounted" >&2; exit 1; }

for i in $(seq 1 "$N"); do
  name="$PREFIX-h$i"
  dir="$RUNDIR/h$i"
  cgdirs=""
  for root in $CGROUP_ROOTS; do
    mkdir -p "$root/ringrift-testbed/h$i"
    cgdirs+="$root/ringrift-testbed/h$i "
  done
  echo "$cgdirs" >"$RUNDIR/h$i.cgroups"
  mkdir -p "$dir/upper" "$dir/work" "$dir/root"
  ip netns add "$name"
  ip -n "$name" link set lo up
  ip -n "$CTL_NS" link add "vh$i" type veth peer name eth0 netns "$name"
  ip -n "$CTL_NS" link set "vh$i" master br0 up
  ip -n "$name" addr add "10.203.0.1$i/24" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" route add default via 10.203.0.1

  # Each host gets a copy-on-write view of the cached rootfs.
  mount -t overlay overlay \
    -o "lowerdir=$ROOTFS,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
  echo "h$i" >"$dir/root/etc/hostname"
  printf '%s\n' "$hosts_lines" >"$dir/root/etc/hosts"
  install -d -m 0700 "$dir/root/root/.ssh"
  install -m 0600 "$RUNDIR/id_ed25519.pub" "$dir/root/root/.ssh/authorized_keys"

  # No systemd as PID 1 on the host: no machined to register with, no scope to
  # allocate, so the container stays in our own cgroup (--keep-unit).
  # bash joins the container's cgroups, then becomes nspawn (same PID).
  CGDIRS="$cgdirs" setsid bash -c 'for d in $CGDIRS; do echo $$ >"$d/cgroup.procs"; done; exec "$@"' nspawn \
    systemd-nspawn -q -D "$dir/root" -b --register=no --keep-unit \
    --network-namespace-path="/run/netns/$name" -M "$name" --hostname="h$i" \
    </dev/null >"$dir/console.log" 2>&1 &
  echo $! >"$dir/nspawn.pid"
  echo "HOST_$i=10.203.0.1$i" >>"$RUNDIR/testbed.env"
done

diagnose() {  # what a failed boot looked like, for the test's output
  local i=$1 pid init
  pid=$(cat "$RUNDIR/h$i/nspawn.pid")
  init=$(pgrep -P "$pid" | head -n1 || true)
  tail -n 20 "$RUNDIR/h$i/console.log" >&2
  if [ -n "$init" ]; then
    echo "--- h$i: is-system-running / failed units / ssh:" >&2
    timeout 10 nsenter -t "$init" -a systemctl is-system-running >&2 || true
    timeout 10 nsenter -t "$init" -a systemctl --failed --no-legend >&2 || true
    timeout 10 nsenter -t "$init" -a systemctl status --no-pager -n 10 ssh.service >&2 || true
  fi
  timeout 10 ip netns exec "$CTL_NS" ssh -v -i "$RUNDIR/id_ed25519" -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 \
    "root@10.203.0.1$i" true 2>&1 | tail -n 8 >&2 || true
}

system_state() {  # what the host's systemd says, over SSH (empty when SSH fails)
  ip netns exec "$CTL_NS" ssh -q -i "$RUNDIR/id_ed25519" -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=3 \
    "root@$1" systemctl is-system-running 2>/dev/null || true
}

# A host is up when SSH answers and systemd has finished booting with no failed
# unit: a degraded host would fail the deployment later, less clearly.
deadline=$((SECONDS + BOOT_TIMEOUT))
for i in $(seq 1 "$N"); do
  while :; do
    state=$(system_state "10.203.0.1$i")
    [ "$state" = running ] && break
    pid=$(cat "$RUNDIR/h$i/nspawn.pid")
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$RUNDIR/h$i/console.log" >&2
      echo "up.sh: container h$i exited during boot" >&2
      exit 1
    fi
    if [ "$state" = degraded ]; then
      diagnose "$i"
      echo "up.sh: h$i booted with failed units" >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      diagnose "$i"
      echo "up.sh: h$i not up with sshd within ${BOOT_TIMEOUT}s" >&2
      exit 1
    fi
    sleep 1
  done
done
echo "up.sh: $N hosts running systemd, reachable over SSH from namespace $CTL_NS" >&2
