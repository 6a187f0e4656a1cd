#!/usr/bin/env bash
# Every test level, in two lanes at once: the deploy level (systemd-nspawn hosts,
# mostly waiting on systemd, Ansible and its timed holds) beside unit, integration
# and cluster.  Serially they take over 40 minutes on a 2-core machine; side by
# side they fit the 30-minute budget.  Each lane writes its own log; both are
# printed, and the exit status is non-zero if either lane failed.
#   RINGRIFT_TEST_SERIAL=1  one lane after the other (for a quiet timing run)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${RINGRIFT_TEST_OUT:-/tmp/ringrift-tests}
rm -rf "$OUT"
mkdir -p "$OUT"
ARGS=(-q -p no:cacheprovider --durations=12)

deploy_pid=""
cleanup() { [ -n "$deploy_pid" ] && kill "$deploy_pid" 2>/dev/null; }
trap cleanup EXIT INT TERM

run_deploy() {
    "$PY" -m pytest "${ARGS[@]}" --basetemp="$OUT/deploy-tmp" tests/deploy >"$OUT/deploy.log" 2>&1
}

start=$(date +%s)
if [ "${RINGRIFT_TEST_SERIAL:-}" = 1 ]; then
    run_deploy
    deploy_rc=$?
else
    run_deploy &
    deploy_pid=$!
fi

# The heaviest level (ten namespaced hosts under chaos) first, while the deploy
# lane is still building and deploying its containers; the deploy lane's timed
# checks (a roll, a 5-minute hold) then run beside the lighter levels.
echo "== cluster, integration, unit (deploy level alongside: $OUT/deploy.log)"
"$PY" -m pytest "${ARGS[@]}" --basetemp="$OUT/main-tmp" tests/cluster tests/integration tests/unit
main_rc=$?

if [ -n "$deploy_pid" ]; then
    wait "$deploy_pid"
    deploy_rc=$?
    deploy_pid=""
fi
echo "== deploy level"
cat "$OUT/deploy.log"
echo "== lanes: main rc=$main_rc deploy rc=$deploy_rc, $(($(date +%s) - start)) s in all"
[ "$main_rc" -eq 0 ] && [ "$deploy_rc" -eq 0 ]
