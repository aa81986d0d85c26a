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
