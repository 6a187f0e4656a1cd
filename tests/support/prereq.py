"""Prerequisites: in CI (CI=true) a missing one fails the test; by hand it skips."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Stop the test when ``condition`` is false: fail in CI, skip by hand."""
    if condition:
        return
    message = f"prerequisite missing: {what}"
    if in_ci():
        pytest.fail(message + " (CI=true: missing prerequisites fail; `make test` installs them)")
    pytest.skip(message)  # by hand only; CI fails above


def need_command(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    need(path is not None, f"command {name!r} (run `make deps`)")
    assert path is not None
    return path


def need_root(what: str) -> None:
    need(os.geteuid() == 0, f"root, for {what}")
