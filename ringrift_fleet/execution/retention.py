"""Model and evaluation retention on one host: the champion and the newest N per config.

Games have ``GAMES_KEEP_FILES`` (:mod:`ringrift_fleet.execution.artifacts`);
models and evaluation outputs would otherwise pile up for as long as a fleet
trains.  After every job a worker keeps, per board config:

* ``models/<config>/``: the newest ``MODELS_KEEP`` models (10) and the models
  this host was last told to play as the reference — the champion of an
  evaluation, the model of a self-play job, a model a sync delivered (the
  leader distributes champions that way).  The last ``PINS_KEPT`` (2) such
  references are pinned, so a job sent just before a promotion still finds the
  previous champion.  The ledger's registry (champion and candidate per config)
  lives in one record per config and is bounded already.
* ``evaluations/<config>/``: the newest ``EVALUATIONS_KEEP`` evaluations (50).

A *model* or *evaluation* is one file directly in the folder (the reference
workload's ``v0007.json``) or one sub-folder (a command workload's
``<job_id>/…``); its age is its newest file's.  Housekeeping never fails a job.
The choice is pure (:func:`doomed`); the pins live in ``models/<config>/.pins.json``
(not an artifact: never listed or served).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ringrift_fleet.execution.artifacts import ArtifactStore
from ringrift_fleet.execution.jobs import RANDOM_CHAMPION, JobSpec

log = logging.getLogger(__name__)

MODELS = "models/"
EVALUATIONS = "evaluations/"
PIN_FILE = ".pins.json"
PINS_KEPT = 2


def folder_of(name: str, kind: str) -> str | None:
    """``models/hex8_2p/v0001.json`` → ``models/hex8_2p/`` (for ``kind`` ``models/``)."""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] + "/" != kind:
        return None
    return f"{parts[0]}/{parts[1]}/"


def doomed(
    entries: Mapping[str, float], folder: str, keep: int, pinned: Iterable[str] = ()
) -> list[str]:
    """Names under ``folder`` to delete: all but the newest ``keep`` units and the
    units holding a ``pinned`` name (a unit: a file in ``folder`` or a sub-folder)."""
    units: dict[str, list[str]] = {}
    newest: dict[str, float] = {}
    for name, created in entries.items():
        if not name.startswith(folder):
            continue
        unit = folder + name[len(folder) :].split("/")[0]
        units.setdefault(unit, []).append(name)
        newest[unit] = max(newest.get(unit, created), created)
    pins = set(pinned)
    held = {u for u, names in units.items() if pins & set(names) or u in pins}
    order = sorted(units, key=lambda u: (newest[u], u), reverse=True)
    kept = set(order[: max(0, keep)]) | held
    return sorted(n for u in order if u not in kept for n in units[u])


# --- pins ---------------------------------------------------------------------------------


def pins(store: ArtifactStore, folder: str) -> list[str]:
    try:
        data = json.loads((store.root / folder / PIN_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [p for p in data if isinstance(p, str)] if isinstance(data, list) else []


def pin(store: ArtifactStore, model: str) -> None:
    """Remember ``model`` as this host's newest reference model of its config."""
    folder = folder_of(model, MODELS)
    if folder is None:
        return
    current = pins(store, folder)
    if current[:1] == [model]:
        return
    new = [model, *(p for p in current if p != model)][:PINS_KEPT]
    path = store.root / folder / PIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{uuid.uuid4().hex}.pins")
    tmp.write_text(json.dumps(new))
    os.replace(tmp, path)  # atomic: concurrent writers leave one whole list


def references(spec: JobSpec) -> list[str]:
    """Models a job told this host to play as the reference (champion-like)."""
    refs: list[Any] = []
    if spec.job_type == "evaluation":
        refs.append(spec.get("champion"))
    elif spec.job_type == "selfplay":
        refs.append(spec.get("model"))
    elif spec.job_type == "sync":
        refs += spec.get("artifacts") or []
    return [r for r in refs if isinstance(r, str) and r != RANDOM_CHAMPION and r.startswith(MODELS)]


# --- after a job ----------------------------------------------------------------------------


def folders(spec: JobSpec, result: Mapping[str, Any]) -> set[str]:
    """The model and evaluation folders a job may have added to."""
    out: set[str] = set()
    names = [a.get("name", "") for a in result.get("artifacts") or [] if isinstance(a, Mapping)]
    names += references(spec)
    for name in names:
        for kind in (MODELS, EVALUATIONS):
            folder = folder_of(str(name), kind)
            if folder:
                out.add(folder)
    return out


def retain(
    store: ArtifactStore,
    spec: JobSpec,
    result: Mapping[str, Any],
    *,
    models_keep: int,
    evaluations_keep: int,
) -> list[str]:
    """Pin the job's reference models, then trim the folders it touched; returns
    what was removed.  Never raises (housekeeping must not fail a job)."""
    removed: list[str] = []
    try:
        for ref in references(spec):
            pin(store, ref)
        for folder in sorted(folders(spec, result)):
            entries = {a["name"]: float(a["created"]) for a in store.listing(folder)}
            if folder.startswith(MODELS):
                gone = doomed(entries, folder, models_keep, pins(store, folder))
            else:
                gone = doomed(entries, folder, evaluations_keep)
            if gone:
                store.remove(gone)
                removed += gone
                log.info("retention: removed %d old artifact(s) of %s", len(gone), folder)
    except Exception as exc:  # disk or manifest trouble: the next job tries again
        with contextlib.suppress(Exception):
            log.warning("model/evaluation retention failed: %s", exc)
    return removed
