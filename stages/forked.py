"""Processes for work whose Python threads would wait on each other's interpreter lock (split's videos
at once: the split tasks of samples/ + tests/data/ took 2.8-3.0 s with two videos on two threads of
a local worker, 2.5-2.55 s with the second video in a forked process).

Two ways to get them, both safe to fork from:
- `prefork`: a long-lived local worker forks them once, at the end of its warm-up (curate/worker.py
  `warm`). It has then imported the stages' libraries but run no thread pool of its own (no decoder,
  OpenCV, onnxruntime or OpenVINO threads; OpenBLAS's idle pool, its only threads then, is shut down
  around a fork by OpenBLAS itself), and the fork costs 15 ms.
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

_pool = None  # concurrent.futures.ProcessPoolExecutor of the forked processes, while usable
_size = 0
_plans: dict = {}  # in a child: the plans it has read, by (path, mtime, size)


class ProcessDied(RuntimeError):
    """The forked process running an item died (a crash in native code, a kill)."""


def prefork(count: int) -> None:
    """Fork `count` processes now; call only while this process runs no thread pool of its own."""
    global _pool, _size
    if count < 1 or _pool is not None:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"),
                               initializer=_child_start, initargs=(os.getpid(), True))
    try:
        pool.submit(int).result(timeout=30)  # with fork, a pool starts all its processes at its first item: now
    except Exception:  # noqa: BLE001 - no processes (no fork, no prctl here): the callers use threads
        pool.shutdown(wait=False, cancel_futures=True)
        return
    _pool, _size = pool, count


def start_server(count: int, preload: list[str]) -> None:
    """Processes for a process that may already run thread pools (a `curate run` task): forked on
    demand from a fresh server process that imports `preload` first (multiprocessing's forkserver)."""
    global _pool, _size
    if count < 1 or _pool is not None:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import resource_tracker

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    # The server's pool holds named semaphores, which the resource tracker unlinks after a task that a
    # signal stopped (os._exit, no teardown), with a warning on its stderr, the task's log, about
    # nothing lost: it starts with its stderr on /dev/null.
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    _pool = ProcessPoolExecutor(count, mp_context=context, initializer=_child_start, initargs=(os.getpid(), False))
    _size = count


def available() -> int:
    """How many forked processes can take items (0 where none were forked, or after one died)."""
    return _size if _pool is not None else 0


def call(function, *args):
    """`function(*args)` in one of the forked processes, with this process's thread budget and its
    fds 1 and 2 (the task's logs, so native libraries' messages land there too); its result, or its
    exception. Raises ProcessDied if that process died, and from then on `available()` is 0."""
    global _pool
    from concurrent.futures.process import BrokenProcessPool

    pool = _pool
    if pool is None:
        raise ProcessDied("no forked process left")
    env = {key: os.environ.get(key) for key in ("CURATE_THREADS", "SLURM_CPUS_PER_TASK")}
    try:
        future = pool.submit(_in_child, function, args, env, os.getpid())
    except BrokenProcessPool:
        _pool = None
        raise ProcessDied("no forked process left") from None
    processes = list(getattr(pool, "_processes", {}).values())  # the pool forgets them once it breaks
    try:
        return future.result()
    except BrokenProcessPool as exc:
        _pool = None
        codes = [code for code in map(_exit_code, processes) if code]
        # the pool terminates the others once one died: the code that broke it is the one that is not that
        codes = [code for code in codes if code != -15] or codes
        raise ProcessDied(f"the process it ran in died{f' (exit code {codes[0]})' if codes else ''}: {exc}") from None


def _exit_code(process, wait_s: float = 2.0) -> int | None:
    """A dead child's exit code (-N: killed by signal N), once the pool's own thread has reaped it."""
    import time

    deadline = time.monotonic() + wait_s
    while process.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return process.exitcode


def cached_plan(run, path):
    """In a child: the run's plan at `path`, read once per version of the file."""
    from curate.plan import load_plan

    stat = os.stat(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _plans:
        _plans.clear()
        _plans[key] = load_plan(run, path)
    return _plans[key]


def _child_start(caller: int, forked_by_caller: bool) -> None:
    import ctypes
    import signal

    if forked_by_caller:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker
        if os.getppid() != caller:  # it died before prctl
            os._exit(1)
    else:  # a fork server's child: the server outlives a caller that dies, and so would its children
        _exit_with(caller)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides what an interrupt stops
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
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


def _in_child(function, args: tuple, env: dict, caller: int):
    import sys

    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    saved = [os.dup(1), os.dup(2)]
    try:
        for fd in (1, 2):
            try:  # the file itself, even where it is deleted (a test's captured output)
                opened = os.open(f"/proc/{caller}/fd/{fd}", os.O_WRONLY | os.O_APPEND)
            except OSError:
                continue
            os.dup2(opened, fd)
            os.close(opened)
        return function(*args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
