"""What every executor shares: the command a task runs and the per-index completion check."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import CurateError
from ..markers import StageMarkers
from ..plan import Plan
from ..rundir import RunDir
from ..task import is_done


def task_command(run: RunDir, stage: str, index: int | None = None, plan_path: Path | None = None,
                 python: str | None = None) -> list[str]:
    """`curate run` with plain arguments: never a pickled pipeline. Index None = from Slurm."""
    cmd = [python or sys.executable, "-m", "curate", "run", "--workdir", str(run.root), "--stage", stage]
    if index is not None:
        cmd += ["--index", str(index)]
    if plan_path is not None:
        cmd += ["--plan", str(plan_path)]
    return cmd


def preflight(run: RunDir, plan: Plan, stages: list[str], here: bool = True,
              on: Callable[[list[str]], tuple[int, str]] | None = None) -> None:
    """Every stage's preflight before any task runs or is submitted (curate.task.preflight_stages).

    It runs in a process of its own: loading the models to check them must not leave them in this
    long-lived process's memory (or on a GPU the tasks need). `on` runs it elsewhere and returns
    (exit code, stderr): the local executor's first worker, which keeps those models for its tasks."""
    if not stages:
        return
    if on is not None:
        code, stderr = on(stages)
    else:
        cmd = [sys.executable, "-m", "curate", "preflight", "--workdir", str(run.root), "--stage", ",".join(stages),
               "--plan", str(plan.path)] + ([] if here else ["--submitting"])
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        code, stderr = proc.returncode, proc.stderr
    if code != 0:
        lines = stderr.strip().splitlines()
        said = next((n for n, line in enumerate(lines) if line.startswith("error: ")), None)
        if said is not None:  # its own message (a CurateError), maybe over several lines
            raise CurateError("\n".join(lines[said:])[len("error: "):])
        raise CurateError(f"the preflight of {', '.join(stages)} crashed (exit {code}): "
                          f"{lines[-1] if lines else 'no output'}")


def next_stage(run: RunDir, plan: Plan, index: int) -> str | None:
    """The first enabled stage not yet done for this index, or None when it is finished."""
    for stage in plan.stages:
        if not is_done(run, stage, index, plan.fingerprints[stage]):
            return stage
    return None


def unfinished(run: RunDir, plan: Plan, stages: list[str], indices: list[int]) -> tuple[list[str], list[int]]:
    """What is left of (stages x indices): the indices some stage has not done, and the stages
    from the first one that any of those indices still lacks (like datatrove's incomplete ranks)."""
    # One listing per stage (curate.markers.StageMarkers), not a marker read per index: 10,000s of indices.
    done = {s: StageMarkers.scan(run, s).done_indices(run, s, plan.fingerprints[s], indices) for s in stages}
    todo = [i for i in indices if any(i not in done[s] for s in stages)]
    first = next((n for n, s in enumerate(stages) if any(i not in done[s] for i in todo)), len(stages))
    return stages[first:], todo
