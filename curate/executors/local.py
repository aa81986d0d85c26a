"""Local executor: a bounded pool of task processes (workers, curate/worker.py) on this machine.

Each index flows through the stages on its own (index 3 can be in split while index 4 is in
fetch). A task that fails stops only its own index. Ctrl-C or SIGTERM terminates the running tasks,
which release their claims; running the same command again finishes the rest. A run.yaml rewritten
with a different plan while it runs stops it (PlanChanged).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import CurateError
from ..faults import signals_raise
from ..local_queue import QueueFile
from ..plan import Plan, load_plan
from ..rundir import RunDir, last_error_line
from .base import next_stage, preflight, task_command, unfinished
from .local_workers import WorkerPool, WorkerTask, wait_for_any, worker_env

BUSY_RETRY_S = 2.0
RUN_WIDE = -1  # the key of a run-wide task (curate/runwide.py) among the running ones


@dataclass
class Running:
    stage: str
    index: int
    proc: subprocess.Popen | WorkerTask
    logs: tuple[IO, IO]
    gpus: list[str] = field(default_factory=list)


def visible_gpus() -> list[str]:
    """The GPUs tasks may use here: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(n) for n, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class GpuSlots:
    """Hands each task of a stage that declares GPUs its own devices (CUDA_VISIBLE_DEVICES), so
    tasks never share a GPU; where the machine has fewer GPUs than a stage asks for, one such task
    at a time (its preflight then says what is missing)."""

    def __init__(self, devices: list[str]):
        self.free = list(devices)
        self.holders = 0  # running tasks that hold GPUs

    def take(self, need: int) -> list[str] | None:
        """The devices for a task needing `need` GPUs ([] for none), or None while it must wait."""
        if need <= 0:
            return []
        if len(self.free) >= need:
            taken, self.free = self.free[:need], self.free[need:]
        elif self.holders == 0 and not self.free:
            taken = []  # no GPU here at all: it runs and fails its preflight with the reason
        else:
            return None
        self.holders += 1
        return taken

    def give_back(self, need: int, devices: list[str]) -> None:
        if need > 0:
            self.free += devices
            self.holders -= 1


class PlanChanged(CurateError):
    """run.yaml now holds other fingerprints than the plan this executor schedules by."""


class PlanWatch:
    """Tasks load run.yaml themselves: once another `curate local` or `submit` rewrites it with another
    config, their fingerprints say "already done" where ours say "not done", and we would relaunch the
    same task forever. So run.yaml is re-read whenever it changes on disk, and a different plan stops us."""

    def __init__(self, run: RunDir, plan: Plan):
        self.run, self.plan = run, plan
        self.stamp: tuple | None = None  # None: compare at the first check, it may have changed since loading

    def check(self) -> None:
        path = self.plan.path
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self.stamp:
                return
            now = load_plan(self.run, path)  # the tasks' own reading of it (strict YAML, manifest check)
        except (OSError, CurateError) as exc:
            raise PlanChanged(f"{path} can no longer be read while this run was going ({exc}); its tasks were "
                              "stopped") from None
        if now.fingerprints != self.plan.fingerprints or now.num_parts != self.plan.num_parts:
            raise PlanChanged(
                f"{path} was rewritten with a different plan while this run was going (another `curate local` or "
                "`curate submit` with another config or manifest?); its tasks were stopped and released their "
                f"claims. Run one command per run directory at a time: `curate local --workdir {path.parent}` "
                "continues with the plan now in run.yaml")
        self.stamp = stamp


@dataclass
class LocalResult:
    failed: dict[int, str] = field(default_factory=dict)  # index -> "stage: last error line"


def _log_files(run: RunDir, stage: str, index: int) -> tuple[IO, IO]:
    log_dir = run.log_dir(stage)
    log_dir.mkdir(parents=True, exist_ok=True)
    # One file pair per attempt, so a retry never overwrites why the last attempt died.
    stem = f"local-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}_{index}"
    return open(log_dir / f"{stem}.out", "w"), open(log_dir / f"{stem}.err", "w")


class LocalExecutor:
    def __init__(self, run: RunDir, plan: Plan, workers: int, progress=None, early: list | None = None):
        self.run, self.plan, self.workers = run, plan, max(1, workers)
        self.progress = progress  # callable(stage, index, event) or None
        from stages import STAGES

        self.gpu_need = {s: STAGES[s].load().resources(plan.config.stage_section(s)).gpus for s in plan.stages}
        self.gpus = GpuSlots(visible_gpus() if any(self.gpu_need.values()) else [])
        from ..runwide import is_run_wide

        self.run_wide = [s for s in plan.stages if is_run_wide(s)]
        self.riders: list[int] = []  # the indices waiting on the running run-wide task
        env = self.env = worker_env(self.workers)
        # Tasks that need no GPU run on long-lived workers (imports and models paid once per worker); a GPU
        # task gets a process of its own, started with its CUDA_VISIBLE_DEVICES.
        self.pool = WorkerPool(run, plan.path, env, early)  # `early`: workers started ahead of the plan

    def _notify(self, stage: str, index: int, event: str) -> None:
        if self.progress:
            self.progress(stage, index, event)

    def execute(self, indices: list[int] | None = None) -> LocalResult:
        todo = list(range(self.plan.num_parts)) if indices is None else list(indices)
        # With a GPU stage, the preflight's models must not stay on a worker (and so on a GPU) for the run.
        stages, left = unfinished(self.run, self.plan, self.plan.stages, todo)
        warm = min(self.workers, len(left))
        on_worker = None if any(self.gpu_need.values()) else lambda names: self.pool.preflight(names, warm)
        try:
            preflight(self.run, self.plan, stages, on=on_worker)
        except BaseException:
            self.pool.close()
            raise
        result = LocalResult()
        waiting: dict[int, float] = {i: 0.0 for i in todo}  # index -> not before (busy back-off)
        running: dict[int, Running] = {}
        queue = QueueFile(self.run, self.workers, self.plan.stages)  # what `curate status` shows as queued
        try:
            # SIGTERM (kill, the end of a job) stops us like Ctrl-C: our tasks run in sessions of their
            # own, so they would not hear it and would keep running, holding their claims.
            with signals_raise((signal.SIGTERM, signal.SIGHUP)):
                queue.update(waiting, force=True)
                self._schedule(waiting, running, result, PlanWatch(self.run, self.plan), queue)
        except BaseException:
            self._stop(running.values())
            raise
        finally:
            queue.close()
            self.pool.close()
        return result

    def _schedule(self, waiting: dict[int, float], running: dict[int, Running], result: LocalResult,
                  watch: PlanWatch, queue: QueueFile) -> None:
        parked: dict[int, str] = {}  # index -> the run-wide stage it waits at
        while waiting or running:
            watch.check()
            # The run-wide task's key is not an index; the indices riding on it are still in this run.
            queue.update(lambda: {i for i in waiting.keys() | running.keys() if i != RUN_WIDE} | set(self.riders))
            now = time.monotonic()
            for index in sorted(waiting):
                if len(running) >= self.workers:
                    break
                if waiting[index] > now:
                    continue
                stage = next_stage(self.run, self.plan, index)
                if stage is None:
                    del waiting[index]
                    continue
                if stage in self.run_wide:  # it runs once, for every index, when none is still before it
                    parked[index] = stage
                    continue
                devices = self.gpus.take(self.gpu_need[stage])
                if devices is None:  # every GPU is busy: an index needing none may go first
                    continue
                logs = _log_files(self.run, stage, index)
                if self.gpu_need[stage]:
                    env = dict(self.env, CUDA_VISIBLE_DEVICES=",".join(devices) or "-1")
                    proc = subprocess.Popen(task_command(self.run, stage, index), stdout=logs[0], env=env,
                                            stderr=logs[1], stdin=subprocess.DEVNULL, start_new_session=True)
                else:
                    proc = self.pool.start(stage, index, Path(logs[0].name), Path(logs[1].name))
                running[index] = Running(stage, index, proc, logs, devices)
                del waiting[index]
                self._notify(stage, index, "start")
            self._start_run_wide(waiting, running, parked)
            if not running:
                if waiting:  # each one held back (another process has its claim): look again soon
                    time.sleep(0.2)
                continue  # none waiting either: the run is over (no nap after its last task)
            wait_for_any([t.proc for t in running.values()], 0.05)
            for index, task in list(running.items()):
                code = task.proc.poll()
                if code is None:
                    continue
                del running[index]
                self.gpus.give_back(self.gpu_need[task.stage], task.gpus)
                for log in task.logs:
                    log.close()
                if index == RUN_WIDE:
                    self._ended_run_wide(task, code, waiting, result)
                elif code == 0:
                    watch.check()  # "done" under a rewritten run.yaml is not done under our plan
                    after = next_stage(self.run, self.plan, index)
                    if after == task.stage:  # another process holds its claim: try again soon
                        waiting[index] = time.monotonic() + BUSY_RETRY_S
                    else:
                        self._notify(task.stage, index, "done")
                        waiting[index] = 0.0
                else:
                    why = last_error_line(Path(task.logs[1].name)) or "exited without output"
                    result.failed[index] = f"{task.stage}: {why}"
                    self._notify(task.stage, index, "failed")

    def _start_run_wide(self, waiting: dict[int, float], running: dict[int, Running], parked: dict[int, str]) -> None:
        """The run-wide task of the first stage indices are parked at, once no index still to run is before
        it (an index that failed earlier has left `waiting`: the task leaves it out and says so)."""
        if RUN_WIDE in running or len(running) >= self.workers or not parked:
            return
        stage = next(s for s in self.run_wide if s in parked.values())
        order = self.plan.stages.index(stage)
        if any(i not in parked for i in waiting) or any(
                self.plan.stages.index(t.stage) < order for t in running.values()):
            return
        self.riders = [i for i, s in parked.items() if s == stage]
        logs = _log_files(self.run, stage, 0)
        proc = self.pool.start(stage, 0, Path(logs[0].name), Path(logs[1].name))
        running[RUN_WIDE] = Running(stage, RUN_WIDE, proc, logs)
        for index in self.riders:
            del waiting[index], parked[index]
            self._notify(stage, index, "start")

    def _ended_run_wide(self, task: Running, code: int, waiting: dict[int, float], result: LocalResult) -> None:
        riders, self.riders = self.riders, []
        if code != 0:
            why = last_error_line(Path(task.logs[1].name)) or "exited without output"
            for index in riders:
                result.failed[index] = f"{task.stage}: {why}"
                self._notify(task.stage, index, "failed")
            return
        for index in riders:
            if next_stage(self.run, self.plan, index) == task.stage:  # another process holds the run claim
                waiting[index] = time.monotonic() + BUSY_RETRY_S
            else:
                self._notify(task.stage, index, "done")
                waiting[index] = 0.0

    @staticmethod
    def _stop(tasks) -> None:
        tasks = list(tasks)
        for task in tasks:
            if task.proc.poll() is None:
                os.killpg(task.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for task in tasks:
            try:
                task.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(task.proc.pid, signal.SIGKILL)
