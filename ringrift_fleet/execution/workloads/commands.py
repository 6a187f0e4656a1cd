"""Command workloads: run a configured command per job type (real deployments).

``WORKLOADS_FILE`` (YAML) maps job types to templates::

    selfplay:
      command: ["python3", "scripts/run_selfplay.py", "--board", "{board_type}",
                "--players", "{num_players}", "--games", "{num_games}",
                "--seed", "{seed}", "--out", "{output_dir}"]
      env: {OMP_NUM_THREADS: "4"}
      cwd: /opt/ringrift/ai-service          # default: the job's output dir
    training:
      command: "python3 scripts/train.py --config {config} --out {output_dir}"

``command`` is an argv list or a string split like a shell would (no shell
runs).  ``{field}`` takes a job field (see :mod:`ringrift_fleet.execution.jobs`)
or one of: ``job_id seed attempt node config output_dir artifact_dir log_file``;
list fields are joined with commas.  A template naming any other field is
rejected when the file is loaded, with the file, line and field.

A job's command runs in its own process group with stdout and stderr in
``<artifact_dir>/logs/<job_id>.log``.  Exit code 0 is success.  Every file the
command leaves in ``{output_dir}`` becomes an artifact named
``<kind>/<config>/<job_id>/<path>`` (kind: games, models, evaluations, sync);
if it writes ``result.json`` there, its keys join the task result (e.g. an
evaluation's ``win_rate``).  A stop (soft time limit, revoke, lost lease)
sends SIGTERM to the group, then SIGKILL after a grace period, and keeps the
files it finished (``*.tmp``/``*.partial``/dot-files are not finished).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import string
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ringrift_fleet.errors import ConfigError
from ringrift_fleet.execution.jobs import JobSpec, fields_of
from ringrift_fleet.execution.workloads import SUPERSEDED, JobContext, WorkloadError
from ringrift_fleet.execution.workloads.reference_game import config_key

EXTRA_FIELDS = (
    "attempt",
    "node",
    "config",
    "output_dir",
    "artifact_dir",
    "log_file",
)
KINDS = {"selfplay": "games", "training": "models", "evaluation": "evaluations", "sync": "sync"}
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class CommandTemplate:
    job_type: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""
    source: str = ""  # file:line, for messages


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check_fields(text: str, allowed: set[str], where: str) -> None:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad template {text!r} ({exc})") from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = name.split(".")[0].split("[")[0]
        if base not in allowed:
            raise ConfigError(
                f"{where}: unknown field {{{name}}} (known: {', '.join(sorted(allowed))})"
            )


def load_templates(path: str | Path) -> dict[str, CommandTemplate]:
    """Load and check a workloads file; every mistake names file, line and field."""
    p = Path(path)
    try:
        root = yaml.compose(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"WORKLOADS_FILE={p}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{p}:{_line(root)}: expected a mapping of job type -> template")
    out: dict[str, CommandTemplate] = {}
    for key_node, value_node in root.value:
        job_type = key_node.value
        where = f"{p}:{_line(key_node)}: {job_type}"
        if job_type not in KINDS:
            raise ConfigError(f"{where}: unknown job type (known: {', '.join(KINDS)})")
        if not isinstance(value_node, yaml.MappingNode):
            raise ConfigError(f"{where}: expected a mapping with 'command'")
        allowed = set(fields_of(job_type)) | set(EXTRA_FIELDS)
        items = {k.value: (k, v) for k, v in value_node.value}
        unknown = set(items) - {"command", "env", "cwd"}
        if unknown:
            k, _ = items[sorted(unknown)[0]]
            raise ConfigError(f"{p}:{_line(k)}: {job_type}.{k.value}: unknown key")
        if "command" not in items:
            raise ConfigError(f"{where}.command: missing")
        cnode = items["command"][1]
        cwhere = f"{p}:{_line(cnode)}: {job_type}.command"
        if isinstance(cnode, yaml.ScalarNode):
            try:
                argv = shlex.split(str(cnode.value))
            except ValueError as exc:
                raise ConfigError(f"{cwhere}: {exc}") from None
        elif isinstance(cnode, yaml.SequenceNode) and all(
            isinstance(n, yaml.ScalarNode) for n in cnode.value
        ):
            argv = [str(n.value) for n in cnode.value]
        else:
            raise ConfigError(f"{cwhere}: expected a string or a list of strings")
        if not argv:
            raise ConfigError(f"{cwhere}: empty command")
        for arg in argv:
            _check_fields(arg, allowed, cwhere)
        env: dict[str, str] = {}
        if "env" in items:
            enode = items["env"][1]
            if not isinstance(enode, yaml.MappingNode):
                raise ConfigError(f"{p}:{_line(enode)}: {job_type}.env: expected a mapping")
            for k, v in enode.value:
                _check_fields(str(v.value), allowed, f"{p}:{_line(v)}: {job_type}.env.{k.value}")
                env[str(k.value)] = str(v.value)
        cwd = str(items["cwd"][1].value) if "cwd" in items else ""
        if cwd:
            _check_fields(cwd, allowed, f"{p}:{_line(items['cwd'][1])}: {job_type}.cwd")
        out[job_type] = CommandTemplate(job_type, tuple(argv), env, cwd, where)
    return out


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    if v is None:
        return ""
    return str(v)


def template_values(
    spec: JobSpec, *, node: str, output_dir: Path, store_root: Path, log: Path
) -> dict[str, str]:
    values = {k: _value(v) for k, v in spec.fields.items()}
    values.update(
        job_id=spec.job_id,
        seed=str(spec.seed),
        fence=_value(spec.fence.token if spec.fence else ""),
        attempt=str(spec.attempt),
        node=node,
        config=config_key(spec.get("board_type"), spec.get("num_players"))
        if "board_type" in spec.fields
        else "",
        output_dir=str(output_dir),
        artifact_dir=str(store_root),
        log_file=str(log),
    )
    return values


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the worker process dies (no orphaned GPU jobs)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_group(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the command's process group, SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _finished_files(out_dir: Path) -> list[Path]:
    files = []
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir)
        if not path.is_file() or path.is_symlink():
            continue
        if any(part.startswith(".") for part in rel.parts) or path.suffix in (".tmp", ".partial"):
            continue
        files.append(path)
    return files


def run_command(template: CommandTemplate, spec: JobSpec, ctx: JobContext) -> dict[str, Any]:
    store = ctx.store
    out_dir = store.work_dir(spec.job_id)
    if out_dir.exists():  # leftovers of a run that died: start clean
        for old in sorted(out_dir.rglob("*"), reverse=True):
            (old.rmdir if old.is_dir() else old.unlink)()
    out_dir.mkdir(parents=True, exist_ok=True)
    log = store.log_path(spec.job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    values = template_values(
        spec, node=ctx.node, output_dir=out_dir, store_root=store.root, log=log
    )
    argv = [a.format(**values) for a in template.argv]
    env = dict(os.environ)
    env.update({k: v.format(**values) for k, v in template.env.items()})
    cwd = template.cwd.format(**values) if template.cwd else str(out_dir)
    stopped = ""
    started = time.monotonic()
    with open(log, "ab") as logf:
        logf.write(f"$ {shlex.join(argv)}\n".encode())
        logf.flush()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise WorkloadError(f"{template.source}: cannot start {argv[0]!r}: {exc}") from None
        try:
            while proc.poll() is None:
                if ctx.superseded():
                    stop_group(proc)
                    return {"status": "refused", "reason": SUPERSEDED, "artifacts": []}
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)
        except ctx.interrupts as exc:
            stopped = type(exc).__name__
            stop_group(proc)
        except BaseException:
            stop_group(proc, grace=2.0)
            raise
    code = proc.returncode
    if not stopped and code != 0:
        tail = log.read_bytes()[-400:].decode(errors="replace").strip().splitlines()[-3:]
        raise WorkloadError(
            f"{spec.job_type} command exited with {code}; log {log}: " + " | ".join(tail)
        )
    extra: dict[str, Any] = {}
    result_file = out_dir / "result.json"
    if result_file.is_file():
        with contextlib.suppress(ValueError, OSError):
            loaded = json.loads(result_file.read_text())
            if isinstance(loaded, dict):
                extra = {k: v for k, v in loaded.items() if k not in ("status", "artifacts")}
        result_file.unlink()
    prefix = f"{KINDS[spec.job_type]}/{values['config'] or 'all'}/{spec.job_id}"
    artifacts = [
        store.adopt(f, f"{prefix}/{f.relative_to(out_dir).as_posix()}")
        for f in _finished_files(out_dir)
    ]
    shutil.rmtree(out_dir, ignore_errors=True)  # what is left is hidden or partial files
    return {
        **extra,
        "status": "partial" if stopped else "completed",
        "stopped": stopped or None,
        "exit_code": code,
        "log": str(log),
        "seconds": round(time.monotonic() - started, 3),
        "artifacts": artifacts,
    }


def templates_for(path: str) -> dict[str, CommandTemplate]:
    """Templates of ``WORKLOADS_FILE`` ("" = none: the reference workload runs)."""
    return load_templates(path) if path else {}


__all__ = ["CommandTemplate", "load_templates", "run_command", "templates_for"]
