"""The local executor's task processes: workers (`python -m curate.worker`) that each run many tasks.

A task on a worker looks to the executor like a `curate run` process: it has a pid (the worker's, in a
session of its own, so a signal to it stops the task), `poll()` gives its exit code once it ends, and a
worker that dies mid-task gives that task the worker's exit code.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..rundir import RunDir

MAX_TASKS_PER_WORKER = 100  # then a fresh one, so a slow leak in some library cannot grow for a whole run


THREAD_KEYS = ("CURATE_THREADS",)  # what a pool's environment adds, sent with every request


def worker_env(workers: int) -> dict:
    """The environment of the local workers of a run with `workers` of them: with more than one, each
    task's share of the cores (stages/cpus.py)."""
    env = dict(os.environ)
    if workers > 1:
        env["CURATE_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))
    return env


class Worker:
    def __init__(self, run: RunDir, plan_path: Path, env: dict, first_log: Path, warm: bool = False):
        self.root, self.plan_path, self.first_log = run.root, plan_path, first_log
        cmd = [sys.executable, "-m", "curate.worker", "--workdir", str(run.root), "--plan", str(plan_path)]
        with open(first_log, "a") as err:  # where an import-time crash is told
            self.proc = subprocess.Popen(cmd + (["--warm"] if warm else []), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.pending = b""
        self.tasks = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, request: dict) -> bool:
        """False when the worker is gone (it died between tasks)."""
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return False
        self.tasks += 1
        return True

    def reply(self) -> int | None:
        """The exit code of the task it runs, None while it runs; a dead worker's own code when it died."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), 256)
        except BlockingIOError:
            chunk = None
        if chunk:
            self.pending += chunk
        if b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            return int(line)
        if chunk == b"" or self.proc.poll() is not None:  # stdout closed: it exited mid-task
            code = self.proc.wait()
            return code if code else 1
        return None

    def close(self) -> None:
        """Only for an idle worker: it holds no claim and writes nothing, so SIGTERM (its default action)
        ends it at once, without the interpreter's teardown of torch and onnxruntime (~0.4 s)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.terminate()
        self.proc.wait()
        self.proc.stdout.close()


class WorkerTask:
    """One task running on a worker, with the face of a `subprocess.Popen` the executor polls and stops."""

    def __init__(self, pool: WorkerPool, worker: Worker):
        self.pool, self.worker = pool, worker
        self.code: int | None = None

    @property
    def pid(self) -> int:
        return self.worker.pid

    def poll(self) -> int | None:
        if self.code is None:
            self.code = self.worker.reply()
            if self.code is not None:
                self.pool.returned(self.worker)
        return self.code

    def wait(self, timeout: float | None = None) -> int:
        self.worker.proc.wait(timeout=timeout)  # only used while stopping: the worker is being killed
        return self.poll() or self.worker.proc.returncode


def wait_for_any(tasks: list, timeout: float) -> None:
    """Sleep until one of these tasks' workers answers (or dies), or `timeout` passes."""
    pipes = [t.worker.proc.stdout for t in tasks if isinstance(t, WorkerTask)]
    if pipes:
        select.select(pipes, [], [], timeout)
    else:
        time.sleep(timeout)


def start_early(workdir: Path, count: int) -> list[Worker]:
    """Workers started before the run's plan exists (`curate local`, ahead of its manifest): they import
    the stages' libraries meanwhile and get the task's thread budget with each request. A pool adopts
    them for the same run directory (`WorkerPool(early=...)`); the caller closes any it did not. They start
    with their share of the cores already, so that their warm-up forks what that share needs."""
    run = RunDir.at(workdir)
    env = worker_env(count)
    return [Worker(run, run.run_yaml, env, _early_log(), warm=True) for _ in range(max(1, count))]


def _early_log() -> Path:
    """Where early workers tell an import-time crash (the run directory may not exist yet)."""
    return Path(tempfile.gettempdir()) / f"curate-worker-{os.getpid()}.err"


def close_early(workers: list[Worker]) -> None:
    """Close the early workers a pool did not take, and remove their start-up log."""
    for worker in workers:
        worker.close()
    _early_log().unlink(missing_ok=True)


class WorkerPool:
    def __init__(self, run: RunDir, plan_path: Path, env: dict, early: list[Worker] | None = None):
        self.run, self.plan_path, self.env = run, plan_path, env
        self.idle: list[Worker] = []
        self.early = early if early is not None else []  # adopted as they are needed; closed with the pool
        self.request_env = {key: env[key] for key in THREAD_KEYS if key in env}

    def _worker(self, first_log: Path) -> Worker:
        while self.idle:
            worker = self.idle.pop()
            if worker.proc.poll() is None:
                return worker
            worker.close()
        return self._fresh(first_log)

    def _fresh(self, first_log: Path) -> Worker:
        """An early worker of this run (one started ahead of the plan), else a new one."""
        while self.early:
            worker = self.early.pop()
            if worker.root == self.run.root and worker.plan_path == self.plan_path and worker.proc.poll() is None:
                return worker
            worker.close()
        return Worker(self.run, self.plan_path, self.env, first_log, warm=True)

    def start(self, stage: str, index: int, out_log: Path, err_log: Path) -> WorkerTask:
        request = {"stage": stage, "index": index, "out": str(out_log), "err": str(err_log), "env": self.request_env}
        worker = self._worker(err_log)
        if not worker.send(request):  # it died idle: one fresh try
            worker.close()
            worker = Worker(self.run, self.plan_path, self.env, err_log, warm=True)
            worker.send(request)
        return WorkerTask(self, worker)

    def returned(self, worker: Worker) -> None:
        if worker.proc.poll() is None and worker.tasks < MAX_TASKS_PER_WORKER:
            self.idle.append(worker)
        else:
            worker.close()

    def preflight(self, stages: list[str], workers: int = 1) -> tuple[int, str]:
        """`curate preflight` on `workers` fresh workers at once, which then stay for the tasks with the
        models they loaded (the second one would otherwise load them while the first one works); the
        first worker's exit code and messages."""
        with tempfile.TemporaryDirectory() as tmp:
            started = []
            for n in range(max(1, workers)):
                out, err = Path(tmp) / f"preflight-{n}.out", Path(tmp) / f"preflight-{n}.err"
                err.touch()
                worker = self._fresh(err)
                # if it died: its code below
                worker.send({"preflight": stages, "out": str(out), "err": str(err), "env": self.request_env})
                started.append((WorkerTask(self, worker), err))
            for task, _ in started:
                while task.poll() is None:
                    wait_for_any([task], 0.5)  # its reply, or its death (EOF)
            task, err = started[0]
            said = err.read_text(errors="replace")
            if task.code and not said.strip() and task.worker.first_log.exists():  # it died before reading
                said = task.worker.first_log.read_text(errors="replace")
            return task.code, said

    def close(self) -> None:
        for worker in self.idle + self.early:
            worker.close()
        self.idle, self.early[:] = [], []

