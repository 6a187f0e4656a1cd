#!/usr/bin/env bash
# Build the wheelhouse the `common` role installs from when hosts have no
# internet (ringrift_install_source: wheelhouse).  Dependencies are cached
# outside the repository, keyed by pyproject.toml; the project's own wheel is
# rebuilt from the checkout every time (reproducibly, so an unchanged checkout
# gives a byte-identical wheel and a re-deploy changes nothing).
#
# Usage: build-wheelhouse.sh [REPO]   -> prints the wheelhouse directory
set -euo pipefail

REPO=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
CACHE=${RINGRIFT_TESTBED_CACHE:-/var/cache/ringrift-fleet-testbed}
PIP=${PIP:-$REPO/.venv/bin/pip}
[ -x "$PIP" ] || { echo "build-wheelhouse: $PIP missing (make deps)" >&2; exit 1; }

# Hosts may run an older patch release than this machine (Debian bookworm: 3.11.2),
# and some requirements differ by it (redis needs async-timeout below 3.11.3), so
# the wheelhouse also gets what the hosts' Python version resolves to.
TARGET_PY=${RINGRIFT_WHEELHOUSE_PYTHON:-3.11.2}
key=$( (cat "$REPO/pyproject.toml"; echo "$TARGET_PY") | sha256sum | cut -c1-16)
deps="$CACHE/wheelhouse-deps-$key"
mkdir -p "$CACHE"
exec 9>"$CACHE/.wheelhouse.lock"
flock -w 900 9 || { echo "build-wheelhouse: lock busy" >&2; exit 1; }

if [ ! -f "$deps/.ready" ]; then
  tmp="$deps.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"
  echo "build-wheelhouse: fetching dependency wheels into $deps" >&2
  timeout 900 "$PIP" wheel --quiet --wheel-dir "$tmp" "$REPO" >&2
  # pip evaluates environment markers against this interpreter only, so add what
  # the hosts' version needs: requirements whose markers hold there, not here.
  for _ in 1 2 3; do
    "$REPO/.venv/bin/python" - "$tmp" "$TARGET_PY" >"$tmp/missing.txt" <<'PY'
import pathlib, sys, zipfile
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

wheels = list(pathlib.Path(sys.argv[1]).glob("*.whl"))
env = default_environment()
env.update(python_full_version=sys.argv[2], python_version=".".join(sys.argv[2].split(".")[:2]))
have = {canonicalize_name(w.name.split("-")[0]) for w in wheels}
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker and not req.marker.evaluate({**env, "extra": ""}):
            continue
        if canonicalize_name(req.name) not in have:
            print(f"{req.name}{req.specifier}")
PY
    [ -s "$tmp/missing.txt" ] || break
    timeout 600 "$PIP" wheel --quiet --no-deps --wheel-dir "$tmp" -r "$tmp/missing.txt" >&2
  done
  rm -f "$tmp"/ringrift_fleet-*.whl "$tmp/missing.txt"
  touch "$tmp/.ready"
  rm -rf "$deps"; mv "$tmp" "$deps"
fi

# The project wheel, reproducible: fixed timestamps, built from a clean copy.
out="$CACHE/wheelhouse-$key"
mkdir -p "$out"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
tar -C "$REPO" --exclude=.venv --exclude=.git --exclude='*.egg-info' --exclude=build \
  --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache \
  -cf - pyproject.toml README.md ringrift_fleet 2>/dev/null | tar -C "$build" -xf - || true
[ -f "$build/README.md" ] || : >"$build/README.md"
timeout 300 "$PIP" wheel --quiet --no-deps --wheel-dir "$build/dist" "$build" >&2
# Copy dependency wheels in (hard links where possible) and replace the project wheel.
for w in "$deps"/*.whl; do ln -f "$w" "$out/" 2>/dev/null || cp -f "$w" "$out/"; done
new=$(ls "$build"/dist/ringrift_fleet-*.whl)
name=$(basename "$new")
if ! cmp -s "$new" "$out/$name"; then
  rm -f "$out"/ringrift_fleet-*.whl
  cp "$new" "$out/$name.tmp" && mv "$out/$name.tmp" "$out/$name"
fi
echo "$out"
