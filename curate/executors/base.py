"""What every executor shares: the command a task runs and the per-index completion check."""

from __future__ import annotations

import sys
from pathlib import Path

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


def next_stage(run: RunDir, plan: Plan, index: int) -> str | None:
    """The first enabled stage not yet done for this index, or None when it is finished."""
    for stage in plan.stages:
        if not is_done(run, stage, index, plan.fingerprints[stage]):
            return stage
    return None


def unfinished(run: RunDir, plan: Plan, stages: list[str], indices: list[int]) -> tuple[list[str], list[int]]:
    """What is left of (stages x indices): the indices some stage has not done, and the stages
    from the first one that any of those indices still lacks (like datatrove's incomplete ranks)."""
    done = {s: {i for i in indices if is_done(run, s, i, plan.fingerprints[s])} for s in stages}
    todo = [i for i in indices if any(i not in done[s] for s in stages)]
    first = next((n for n, s in enumerate(stages) if any(i not in done[s] for i in todo)), len(stages))
    return stages[first:], todo
