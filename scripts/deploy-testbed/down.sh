#!/usr/bin/env bash
# Tear down what up.sh made: containers (by the PIDs up.sh recorded), overlay
# mounts, namespaces, bridge, and the blackhole route.  Safe to run twice and on
# a half-built test bed; every wait is bounded.
set -uo pipefail

RUNDIR=${1:?usage: down.sh RUNDIR [N]}
N=${2:-3}
PREFIX=${RINGRIFT_TESTBED_PREFIX:-rrdep}
CTL_NS="$PREFIX-ctl"

for i in $(seq 1 9); do
  dir="$RUNDIR/h$i"
  pidfile="$dir/nspawn.pid"
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    # Only a systemd-nspawn we started: check the PID still is one.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "systemd-nspawn" ]; then
      kill -TERM "$pid" 2>/dev/null  # nspawn asks the container's systemd to power off
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        sleep 0.5
      fi
    fi
    rm -f "$pidfile"
  fi
  # The container's own cgroups (up.sh made them): end what is left in them by
  # PID (only the container's processes can be there), then remove them.
  if [ -f "$RUNDIR/h$i.cgroups" ]; then
    for cg in $(cat "$RUNDIR/h$i.cgroups"); do
      [ -d "$cg" ] || continue
      for _ in $(seq 1 20); do
        pids=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
        [ -z "$pids" ] && break
        kill -KILL $pids 2>/dev/null
        sleep 0.25
      done
      find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
      rmdir "$(dirname "$cg")" 2>/dev/null
    done
    rm -f "$RUNDIR/h$i.cgroups"
  fi
  if mountpoint -q "$dir/root" 2>/dev/null; then
    umount "$dir/root" 2>/dev/null || umount -l "$dir/root"
  fi
done
# The namespaces, bridge and route carry fixed names: leave them alone when a
# newer test bed (another run directory) owns them now.
ACTIVE=/run/ringrift-deploy-testbed.rundir
owner=$(cat "$ACTIVE" 2>/dev/null || true)
if [ -n "$owner" ] && [ "$owner" != "$RUNDIR" ]; then
  echo "down.sh: the network belongs to $owner now; removed only this run's containers" >&2
  exit 0
fi
for i in $(seq 1 9); do
  rm -rf "/run/systemd/nspawn/propagate/$PREFIX-h$i" 2>/dev/null
  ip netns list | grep -qw "$PREFIX-h$i" && ip netns del "$PREFIX-h$i"
done
ip netns list | grep -qw "$CTL_NS" && ip netns del "$CTL_NS"
ip route del blackhole 10.203.0.0/24 2>/dev/null
rm -f "$RUNDIR/blackhole" "$ACTIVE"
exit 0
