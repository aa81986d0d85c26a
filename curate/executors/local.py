"""Local executor: a bounded pool of `curate run` processes on this machine.

Each index flows through the stages on its own (index 3 can be in split while index 4 is in
fetch). A task that fails stops only its own index. Ctrl-C terminates the running tasks, which
release their claims; running the same command again finishes the rest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..plan import Plan
from ..rundir import RunDir, last_error_line
from .base import next_stage, task_command

BUSY_RETRY_S = 2.0


@dataclass
class Running:
    stage: str
    index: int
    proc: subprocess.Popen
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
    def __init__(self, run: RunDir, plan: Plan, workers: int, progress=None):
        self.run, self.plan, self.workers = run, plan, max(1, workers)
        self.progress = progress  # callable(stage, index, event) or None
        from stages import STAGES

        self.gpu_need = {s: STAGES[s].load().resources(plan.config.stage_section(s)).gpus for s in plan.stages}
        self.gpus = GpuSlots(visible_gpus() if any(self.gpu_need.values()) else [])

    def _notify(self, stage: str, index: int, event: str) -> None:
        if self.progress:
            self.progress(stage, index, event)

    def execute(self, indices: list[int] | None = None) -> LocalResult:
        todo = list(range(self.plan.num_parts)) if indices is None else list(indices)
        result = LocalResult()
        waiting: dict[int, float] = {i: 0.0 for i in todo}  # index -> not before (busy back-off)
        running: dict[int, Running] = {}
        try:
            while waiting or running:
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
                    devices = self.gpus.take(self.gpu_need[stage])
                    if devices is None:  # every GPU is busy: an index needing none may go first
                        continue
                    env = None
                    if self.gpu_need[stage]:
                        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(devices) or "-1"}
                    logs = _log_files(self.run, stage, index)
                    proc = subprocess.Popen(task_command(self.run, stage, index), stdout=logs[0], env=env,
                                            stderr=logs[1], stdin=subprocess.DEVNULL, start_new_session=True)
                    running[index] = Running(stage, index, proc, logs, devices)
                    del waiting[index]
                    self._notify(stage, index, "start")
                if not running:
                    time.sleep(0.2)
                    continue
                time.sleep(0.05)
                for index, task in list(running.items()):
                    code = task.proc.poll()
                    if code is None:
                        continue
                    del running[index]
                    self.gpus.give_back(self.gpu_need[task.stage], task.gpus)
                    for log in task.logs:
                        log.close()
                    if code == 0:
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
        except BaseException:
            self._stop(running.values())
            raise
        return result

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
