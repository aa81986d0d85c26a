"""Processes for work whose Python threads would wait on each other's interpreter lock (split's videos
at once: the split tasks of samples/ + tests/data/ took 2.8-3.0 s with two videos on two threads of
a local worker, 2.5-2.55 s with the second video in a forked process).

Two ways to get them, both safe to fork from:
- `prefork`: a long-lived local worker forks them once in its warm-up (curate/worker.py `warm`),
  right after split's libraries are imported and before later stages' (OpenVINO's import starts a
  telemetry thread; the fork is skipped wherever another Python thread runs). The worker has then run
  no thread pool of its own (no decoder, OpenCV, onnxruntime or OpenVINO threads; OpenBLAS's idle
  pool, its only native threads then, is shut down around a fork by OpenBLAS itself), and the fork
  costs 15 ms.
- `start_server`: any other process (a `curate run` task under Slurm, whose polars and claim
  heartbeat threads already run) starts multiprocessing's fork server: a fresh interpreter that
  imports the given modules (about 0.3 s) and forks each process from there.
Forking from a process whose pools have run could leave a child waiting on a lock held by a thread
the fork did not copy. A child dies with the process it serves (PR_SET_PDEATHSIG; a fork server ends
with its parent); one that dies mid-item takes the processes out of use, and the callers go back to
threads.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

_pool = None  # concurrent.futures.ProcessPoolExecutor of the forked processes, while usable
_size = 0
_died = False  # a process died once: no new ones in this process (its callers keep to threads)
_plans: dict = {}  # in a child: the plans it has read, by (path, mtime, size)


class ProcessDied(RuntimeError):
    """The forked process running an item died (a crash in native code, a kill)."""


class NotStarted(ProcessDied):
    """No forked process could take the item: it did not start, and the caller may run it itself."""


def prefork(count: int) -> None:
    """Fork `count` processes now, if this process runs no other Python thread (call it before any
    thread pool runs: `stages.split.SplitStage.warm_worker`)."""
    import threading

    if count < 1 or _pool is not None or threading.active_count() > 1:
        return
    import gc
    import multiprocessing

    gc.freeze()  # what the imports made stays shared with the children, not copied by a collection
    _start(count, multiprocessing.get_context("fork"), (os.getpid(), True))


def start_server(count: int, preload: list[str]) -> None:
    """Processes for a process that may already run thread pools (a `curate run` task): forked on
    demand from a fresh server process that imports `preload` first (multiprocessing's forkserver)."""
    if count < 1 or _pool is not None or _died:
        return
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    _start(count, context, (os.getpid(), False))


def _start(count: int, context, initargs: tuple) -> None:
    global _pool, _size
    import signal
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import resource_tracker

    from curate.faults import HANDLED_SIGNALS

    # The pool's own threads (and, with fork, its children) start with the stop signals blocked: they
    # must reach the task's main thread only, which blocks them while it takes its claim.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    forking = context.get_start_method() == "fork"
    pool = None
    try:
        if not forking:
            # A fork server's pool holds named semaphores, which the resource tracker unlinks after a task
            # that a signal stopped (os._exit, no teardown), warning on its stderr (the task's log)
            # about nothing lost: it starts with its output on /dev/null.
            from multiprocessing import forkserver

            with _output_to_devnull():  # the server's too: its children write to each item's caller's logs
                resource_tracker.ensure_running()
                forkserver.ensure_running()
        pool = ProcessPoolExecutor(count, mp_context=context, initializer=_child_start, initargs=initargs)
        if forking:
            pool.submit(int).result(timeout=30)  # with fork, a pool starts all its processes at its first item
        _pool, _size = pool, count
        import atexit

        atexit.register(_drop)
    except Exception:  # noqa: BLE001 - no processes here (no fork, no prctl, no /dev/shm): callers use threads
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _drop() -> None:
    """At exit, while the modules the pool's own clean-up uses are still there."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True)
    _pool = None


def available() -> int:
    """How many forked processes can take items (0 where none were forked, or after one died)."""
    return _size if _pool is not None else 0


def call(function, *args):
    """`function(*args)` in one of the forked processes, with this process's thread budget and its
    fds 1 and 2 (the task's logs, so native libraries' messages land there too); its result, or its
    exception. Raises NotStarted where no process could take it, ProcessDied if its process died; from
    then on `available()` is 0."""
    global _pool, _died
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from curate.faults import HANDLED_SIGNALS

    from .cpus import BUDGET_VARIABLES

    pool = _pool
    if pool is None:
        raise NotStarted("no forked process left")
    env = {key: os.environ.get(key) for key in BUDGET_VARIABLES}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)  # for the threads a first item starts
    try:
        future = pool.submit(_in_child, function, args, env, os.getpid(), _fds_to_share())
    except Exception as exc:  # noqa: BLE001 - broken, or a fork server that could not start
        _pool, _died = None, True
        raise NotStarted(f"no forked process could take it: {type(exc).__name__}: {exc}") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    processes = list(getattr(pool, "_processes", {}).values())  # the pool forgets them once it breaks
    try:
        return future.result()
    except BrokenProcessPool as exc:
        _pool, _died = None, True
        codes = [code for code in map(_exit_code, processes) if code]
        # the pool terminates the others once one died: the code that broke it is the one that is not that
        codes = [code for code in codes if code != -signal.SIGTERM] or codes
        raise ProcessDied(f"the process it ran in died{f' (exit code {codes[0]})' if codes else ''}: {exc}") from None


def _exit_code(process, wait_s: float = 2.0) -> int | None:
    """A dead child's exit code (-N: killed by signal N), once the pool's own thread has reaped it."""
    import time

    deadline = time.monotonic() + wait_s
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return process.exitcode


def cached_plan(run, path, fingerprints: dict):
    """In a child: the run's plan at `path`, read once per version of the file; it must be the plan
    the caller runs (`fingerprints`), not one written since."""
    from curate.errors import CurateError
    from curate.plan import load_plan

    stat = os.stat(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _plans:
        _plans.clear()
        _plans[key] = load_plan(run, path)
    if _plans[key].fingerprints != fingerprints:
        raise CurateError(f"{path} was rewritten with a different plan while this task ran; run it again")
    return _plans[key]


def _fds_to_share() -> list[int]:
    """The caller's fds 1 and 2 that a child can write to through a file of its own: pipes, terminals and
    files opened for appending (a child's own offset in a file opened without O_APPEND would let the
    caller overwrite what the child wrote)."""
    import fcntl
    import stat

    shared = []
    for fd in (1, 2):
        try:
            mode, flags = os.fstat(fd).st_mode, fcntl.fcntl(fd, fcntl.F_GETFL)
        except OSError:
            continue
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or (stat.S_ISREG(mode) and flags & os.O_APPEND):
            shared.append(fd)
    return shared


@contextmanager
def _output_to_devnull():
    """fds 1 and 2 on /dev/null inside the block (for the processes started there)."""
    saved, null = [os.dup(1), os.dup(2)], os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(null, fd)
        yield
    finally:
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(null)


def _child_start(caller: int, forked_by_caller: bool) -> None:
    import ctypes
    import signal

    if forked_by_caller:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG: die with the worker
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != caller:  # it died before prctl
            os._exit(1)
    else:  # a fork server's child: the server outlives a caller that dies, and so would its children
        _exit_with(caller)
    # The caller decides what a signal stops (its process group gets them too: Ctrl-C, killpg, scancel);
    # a child ends with it, whatever ended it.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # not the worker's request pipe
    os.close(null)
    os.dup2(2, 1)  # not its reply pipe: the worker's own stderr until an item's logs replace it


def _exit_with(caller: int) -> None:
    """End this process as soon as `caller` ends (a thread waiting on its pidfd; polling where the
    kernel has none)."""
    import threading

    try:
        pidfd = os.pidfd_open(caller)
    except (AttributeError, OSError):
        pidfd = None

    def watch() -> None:
        import select
        import time

        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while os.path.exists(f"/proc/{caller}"):
                time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-caller", daemon=True).start()


def _in_child(function, args: tuple, env: dict, caller: int, fds: list[int]):
    import pickle
    import sys

    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    saved = [os.dup(1), os.dup(2)]
    try:
        for fd in fds:
            try:  # the file itself, even where it is deleted (a test's captured output)
                opened = os.open(f"/proc/{caller}/fd/{fd}", os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC)
            except OSError:
                continue
            os.dup2(opened, fd)
            os.close(opened)
        try:
            return function(*args)
        except Exception as exc:
            try:  # it must reach the caller as it is, or as its text: one that does not unpickle breaks the pool
                pickle.loads(pickle.dumps(exc))
            except Exception:  # noqa: BLE001
                import traceback

                raise RuntimeError("".join(traceback.format_exception(exc)).strip()) from None
            raise
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
