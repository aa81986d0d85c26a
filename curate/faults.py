"""What stops a task other than its own work: a signal, and a run directory that cannot be written.

Kept apart from the task contract (curate/task.py), which imports the config models: the command
line catches these around every command, and must not pay for those imports before it starts the
local workers.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path

from .errors import CurateError


class TaskInterrupted(BaseException):
    """A signal (Ctrl-C, scancel, time limit, preemption) arrived; stop without a marker."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self):  # pickled by its number (stages/forked.py hands exceptions between processes)
        return type(self), (self.signum,)


class StorageError(CurateError):
    """The run directory cannot be written (disk full, quota, read-only, permissions): a systemic fault."""


class FailureNotRecorded(StorageError):
    """A task failed and its .failed marker could not be written either."""


_STORAGE_HINTS = {
    errno.ENOSPC: "free space on that filesystem",
    errno.EDQUOT: "free space within your quota",
    errno.EROFS: "make the run directory writable (it is on a read-only filesystem)",
    errno.EACCES: "make the run directory writable for this user",
    errno.EPERM: "make the run directory writable for this user",
}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how polars (Rust) reports an OSError it hit


def storage_error(exc: BaseException, path: Path | None = None) -> StorageError | None:
    """`exc` as a clear StorageError when it is a full disk / read-only / permission fault, else None.

    Python raises OSError with an errno; polars raises ComputeError or an errno-less OSError whose
    text ends in "(os error 28)", so both are recognised."""
    code = getattr(exc, "errno", None)
    if code is None:
        match = _OS_ERROR.search(str(exc))
        code = int(match.group(1)) if match else None
    if code not in _STORAGE_HINTS:
        return None
    where = getattr(exc, "filename", None) or path
    return StorageError(f"cannot write {where or 'the run directory'}: {os.strerror(code)}; "
                        f"{_STORAGE_HINTS[code]}, then run the same command again (finished work is kept)")


@contextmanager
def storage_errors(path: Path | None = None):
    """Turn a full-disk / read-only fault inside the block into a StorageError (a message, exit 2)."""
    try:
        yield
    except Exception as exc:
        error = storage_error(exc, path)
        if error is None:
            raise
        raise error from None


HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
STOP_SIGNAL = signal.SIGUSR1  # what the sbatch script relays before the time limit or on preemption


_arrived: list[int] = []  # the signals that arrived inside signals_raise (see raise_if_interrupted)


@contextmanager
def signals_raise(signums=HANDLED_SIGNALS):
    def handler(signum, _frame):
        _arrived.append(signum)
        raise TaskInterrupted(signum)

    _arrived.clear()
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _arrived.clear()


def raise_if_interrupted() -> None:
    """Raise again the TaskInterrupted of a signal that Python dropped: one that arrived inside an
    import's lock callback or a __del__, where an exception is printed and ignored (seen in a Slurm
    test: a time-limit signal during an import, and the task ran on to its .done). Called before a
    task commits its result."""
    if _arrived:
        raise TaskInterrupted(_arrived[0])


def stopped_by_signal(exc: BaseException) -> TaskInterrupted | None:
    """The stop behind a task's exception: the exception itself when it is one, else the signal that
    arrived during the task, if any. Library code the handler's exception passes through may turn it into
    an error of its own (an ImportError, a per-video failure), and that error must not count as the task's
    own failure: a time-limit stop on a task with requeues left would be marked failed and then
    requeued anyway, or one past its last requeue would be requeued once more (seen once in ~30 runs of
    the requeue cluster test: attempt 3 ran)."""
    if isinstance(exc, TaskInterrupted):
        return exc
    return TaskInterrupted(_arrived[0]) if _arrived else None
