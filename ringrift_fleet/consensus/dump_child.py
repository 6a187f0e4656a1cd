"""The Raft full dump (log compaction), written by a forked child.

pysyncobj writes the dump with the serializer hook on its own thread, which sends
no heartbeat and answers no vote meanwhile.  In the 60-minute, 30-host soak those
dumps took 2.1-12.4 s (6-8 MB of ledger on a loaded 2-core machine): a leader that
dumps loses its followers, a follower that dumps misses an election.  A thread would
not help (pickling holds the GIL), so the dump is written the way Redis writes its
RDB: a forked child pickles the copy-on-write image of the state as it was at the
fork, and the Raft thread only polls it (``os.waitpid`` with ``WNOHANG``) on its
ticks.

What the child does and does not touch, because the parent has other threads: it
closes every inherited descriptor first (a child that outlives a killed coordinator
must not hold its listening ports), restores default signal handlers, dies with the
process that forked it (``PR_SET_PDEATHSIG``), disables the cycle collector (a
finaliser must not close a descriptor number the dump reuses), takes no lock of the
parent's, logs nothing and leaves with ``os._exit``.

The child writes ``<dump>.part`` and fsyncs it; the parent renames it over the dump
when the child succeeded, unless the dump file was replaced while the child ran (a
snapshot received from the leader is newer than the child's image and must stay).
A child that runs past ``timeout`` is killed and the dump counts as failed:
pysyncobj keeps its log and tries again in its next window.  Where ``fork`` is not
possible the dump is written in-process, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable
from enum import Enum
from typing import BinaryIO, NoReturn

log = logging.getLogger(__name__)

# Python 3.12+ warns on every fork of a threaded process; the child above runs no
# code that could wait on another thread's lock.
warnings.filterwarnings(
    "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
)

# A dump that takes longer is stuck (the soak's slowest took 12.4 s): kill it and
# let pysyncobj try again, rather than never compacting the log again.
DUMP_TIMEOUT_S = 120.0

_PR_SET_PDEATHSIG = 1


class Progress(Enum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


Writer = Callable[[BinaryIO], None]


class ForkedDump:
    """At most one dump at a time into ``target``; :meth:`poll` reports each outcome
    once.  Called only from the Raft thread (start, poll) and from close (stop)."""

    def __init__(
        self,
        target: str,
        timeout: float = DUMP_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.part = target + ".part"
        self.timeout = timeout
        self._clock = clock
        self._pid = 0
        self._started = 0.0
        self._target_id: tuple[int, int] | None = None
        self._outcome: Progress | None = None  # an in-process write's, reported once
        self.last_seconds: float | None = None  # how long the last finished dump took
        self.last_stall_s: float | None = None  # how long the caller's thread was held

    @property
    def running(self) -> bool:
        return self._pid != 0

    def start(self, write: Writer) -> None:
        """Begin a dump of the state as it is now; returns once the child is forked."""
        if self._pid or self._outcome is not None:
            return
        t0 = self._clock()
        try:
            self._target_id = _file_id(self.target)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.part)  # a killed child's leftover
        except OSError as exc:
            # reported through poll: pysyncobj then tries again in its next window
            # (an exception here would leave it waiting for a dump that never ends)
            log.warning("raft dump: cannot prepare %s: %s", self.part, exc)
            self._outcome = Progress.FAILED
            return
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            log.warning("raft dump: cannot fork (%s); writing it on the Raft thread", exc)
            self._outcome = self._write_here(write)
            self.last_stall_s = self.last_seconds = self._clock() - t0
            return
        if pid == 0:
            _child(write, self.part, parent)
        self._pid, self._started = pid, t0
        self.last_stall_s = self._clock() - t0

    def refuse(self) -> None:
        """Report this dump as failed at the next poll, without starting it."""
        if not self._pid:
            self._outcome = Progress.FAILED

    def poll(self) -> Progress:
        """What became of the dump; DONE and FAILED are reported once, then IDLE."""
        if self._outcome is not None:
            outcome, self._outcome = self._outcome, None
            return outcome
        if not self._pid:
            return Progress.IDLE
        try:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: its result is unknown
            self._pid = 0
            return self._fail("the dump process vanished")
        elapsed = self._clock() - self._started
        if pid == 0:
            if elapsed <= self.timeout:
                return Progress.RUNNING
            self._kill()
            return self._fail(f"the dump process ran past {self.timeout:g}s and was killed")
        self._pid = 0
        self.last_seconds = elapsed
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            return self._fail(f"the dump process exited with {code}")
        if _file_id(self.target) != self._target_id:
            # a snapshot from the leader replaced the dump meanwhile: it is newer
            return self._fail("a received snapshot replaced the dump while it was written")
        try:
            os.replace(self.part, self.target)
            _fsync_dir(self.target)
        except OSError as exc:
            return self._fail(f"cannot put the dump in place: {exc}")
        return Progress.DONE

    def stop(self) -> None:
        """Kill a running child (the ledger is closing) and remove its partial file."""
        if self._pid:
            self._kill()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)
        self._pid = 0

    def _fail(self, why: str) -> Progress:
        log.warning("raft dump failed: %s; the log stays until the next dump", why)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.part)
        return Progress.FAILED

    def _write_here(self, write: Writer) -> Progress:
        try:
            _write_file(write, self.part)
            os.replace(self.part, self.target)
            _fsync_dir(self.target)
        except Exception as exc:
            log.warning("raft dump failed: %s", exc)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.part)
            return Progress.FAILED
        return Progress.DONE


def _child(write: Writer, part: str, parent: int) -> NoReturn:
    code = 1
    try:
        gc.disable()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent()
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
        os.closerange(3, _max_fd())
        _write_file(write, part)
        code = 0
    except BaseException:  # the exit code is the only report
        code = 1
    finally:
        os._exit(code)


def _write_file(write: Writer, path: str) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
