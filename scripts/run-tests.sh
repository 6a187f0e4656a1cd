#!/usr/bin/env bash
# Every test level, in two lanes at once: the deploy level (systemd-nspawn hosts,
# mostly waiting on systemd, Ansible and its timed holds) then unit, beside
# integration then cluster.  Serially they take over 40 minutes on a 2-core machine; side
# by side about 30.  Each lane writes its own log; both are
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

# Lane 1: the deploy level, then the unit level (pure and quick: it fills the
# time the deploy lane would otherwise finish early).
run_deploy() {
    "$PY" -m pytest "${ARGS[@]}" --basetemp="$OUT/deploy-tmp" tests/deploy >"$OUT/deploy.log" 2>&1
    local rc=$?
    "$PY" -m pytest "${ARGS[@]}" --basetemp="$OUT/unit-tmp" tests/unit >>"$OUT/deploy.log" 2>&1
    local unit_rc=$?
    [ "$rc" -eq 0 ] && [ "$unit_rc" -eq 0 ]
}

start=$(date +%s)
if [ "${RINGRIFT_TEST_SERIAL:-}" = 1 ]; then
    run_deploy
    deploy_rc=$?
else
    run_deploy &
    deploy_pid=$!
fi

# Lane 2: integration, then the heaviest level (ten namespaced hosts under chaos)
# last, when the deploy lane is in its unit tests or done: beside the deploy
# lane's container builds the soak's hosts were starved into false deaths.
echo "== integration, cluster (deploy, then unit, alongside: $OUT/deploy.log)"
"$PY" -m pytest "${ARGS[@]}" --basetemp="$OUT/main-tmp" tests/integration tests/cluster
main_rc=$?

if [ -n "$deploy_pid" ]; then
    wait "$deploy_pid"
    deploy_rc=$?
    deploy_pid=""
fi
echo "== deploy and unit levels"
cat "$OUT/deploy.log"
echo "== lanes: cluster+integration rc=$main_rc, deploy+unit rc=$deploy_rc, $(($(date +%s) - start)) s in all"
[ "$main_rc" -eq 0 ] && [ "$deploy_rc" -eq 0 ]
