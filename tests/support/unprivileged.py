"""Run a check as an unprivileged user, for permission cases a root test run cannot see.

Root reads and writes anything, so "cannot read" and "read-only" only show up as
another user.  The check runs in a forked child that drops to nobody/nogroup (the
modules it needs are already loaded, so nothing has to be readable to that user
except the paths under test) and reports the error it raised, or "" for none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


@contextmanager
def world_dir() -> Iterator[Path]:
    """A fresh directory under /tmp that another user can enter (tmp_path cannot)."""
    path = Path(tempfile.mkdtemp(prefix="ringrift-perm-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for child in sorted(path.rglob("*"), reverse=True):
            child.chmod(0o700)
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()


def error_of(check: Callable[[], object]) -> str:
    """What ``check`` raised (``"Type: message"``, ``""`` for nothing), as nobody when root."""
    if os.geteuid() == 0:
        return error_as_nobody(check)
    try:
        check()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def error_as_nobody(check: Callable[[], object]) -> str:
    """``"Type: message"`` of what ``check`` raised as nobody, or ``""`` if it raised nothing."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, and never return into pytest
        code = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                check()
                text = ""
            except BaseException as exc:
                text = f"{type(exc).__name__}: {exc}"
            os.write(write_fd, text.encode()[:60000])
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks: list[bytes] = []
    with os.fdopen(read_fd, "rb") as fh:
        chunks.append(fh.read())
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the unprivileged check failed to run (status {status})")
    return b"".join(chunks).decode()
