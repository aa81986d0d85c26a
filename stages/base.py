"""The one shape every stage has: built with its task context, checked, then `run` on a table.

A stage gets the previous stage's rows for its index and returns its own. Rows it does not
work on (status other than "ok") pass through unchanged, so every input video stays accounted
for until the final table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import polars as pl

    from curate.plan import Plan
    from curate.plugin import ModelEntry, Resources
    from curate.rundir import RunDir


@dataclass
class TaskContext:
    run: RunDir
    plan: Plan
    stage: str
    index: int
    log: Callable[[str], None] = print
    # Filled in by stages, reported in the .done marker.
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> Any:
        return self.plan.config.stage_section(self.stage)


class Stage:
    """A stage plug-in. Everything the orchestration needs to know about it comes from the
    class-level descriptions below, computed from its config section (`cfg`)."""

    name = ""
    in_calibration: ClassVar[bool] = True  # `--calibration` runs it (it measures, it does not spend or publish)
    publishes: ClassVar[bool] = False  # `--skip-upload` leaves it out
    # One task over every index at once (curate/runwide.py), once the stage before has ended for all;
    # it implements `run_all` instead of `run`.
    run_wide: ClassVar[bool] = False
    # Libraries its tasks import (lazily, inside the stage): a local worker started ahead of the plan
    # imports them while `curate local` still writes the manifest (curate/worker.py `warm`).
    warm_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: TaskContext):
        self.ctx = ctx
        self.cfg = ctx.section

    @classmethod
    def warm_worker(cls) -> None:
        """Once in a long-lived local worker, right after its own `warm_modules` (and those of the stages
        before it) are imported and before the first request: while the worker runs no thread pool of its
        own (split forks its video processes there, stages/forked.py). A failure here is ignored."""

    def preflight(self) -> None:
        """Systemic preconditions (tools, weights); raise CurateError before any work starts."""

    def run(self, rows: pl.DataFrame) -> pl.DataFrame:
        raise NotImplementedError

    def run_all(self, parts: dict[int, pl.DataFrame], settled: dict[int, pl.DataFrame],
                left_out: list[int]) -> dict[int, pl.DataFrame]:
        """A run-wide stage: the output part of every index in `parts` (their upstream rows), given the
        parts it wrote before (`settled`) and the indices whose stage before is not done (`left_out`)."""
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, config) -> dict:
        """Settings outside this stage's own section that change its output (none by default)."""
        return {}

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        """The columns this stage adds (polars dtype names): calibration and the dataset card read them."""
        return {}

    @classmethod
    def models(cls, cfg) -> list[ModelEntry]:
        """Every model this stage can load, enabled or not, for `curate models`."""
        return []

    @classmethod
    def resources(cls, cfg) -> Resources:
        """What one task needs, from the devices its config uses; a Slurm profile only overrides it."""
        from curate.plugin import Resources

        return Resources()

    @classmethod
    def recorded_consumers(cls, cfg) -> list:
        """The frame consumers of this stage whose recorders split's decode feeds on its behalf
        (stages/handoff.py): the stage then reads their records instead of decoding."""
        return []

    @classmethod
    def whole_videos(cls, cfg) -> None:
        """Set this stage's config so that every video stays whole (`curate offline-filter`)."""

    @classmethod
    def progress(cls, run, cfg) -> dict | None:
        """Work done inside this stage's unfinished tasks, for `curate status` (None: nothing to say)."""
        return None

    @classmethod
    def progress_line(cls, progress: dict) -> str | None:
        """`progress` as one line under the status table."""
        return None

    @classmethod
    def outcome(cls, run, cfg) -> dict:
        """What `curate local` reports about this stage once the run is over (e.g. where uploads went)."""
        return {}

    @classmethod
    def calibration_note(cls, clips, cfg) -> dict | None:
        """What `curate calibrate` says about the clips this stage took out before the thresholds, from the
        run's clips (a polars LazyFrame): {"line": ..., figures...}, or None."""
        return None

    @classmethod
    def threshold_checks(cls, cfg) -> list:
        """This stage's thresholds as curate.decisions.Check expressions, applied at export."""
        return []


def target_clips(rows, config, stage: str, only_kept: bool) -> list[dict]:
    """The clip rows a stage works on: status ok, and with only_kept, passing every threshold of
    the enabled stages before it (the same checks export applies)."""
    import polars as pl

    from curate.decisions import failing_reasons, run_checks

    wanted = (pl.col("status") == "ok") & pl.col("clip_id").is_not_null()
    if only_kept:
        wanted = wanted & (failing_reasons(run_checks(config, until=stage), rows.columns).list.len() == 0)
    return rows.filter(wanted).to_dicts()


def by_video(clips: list[dict]) -> dict[str, list[dict]]:
    """Clips grouped by the file they come from, in first-seen order: one decode per video."""
    groups: dict[str, list[dict]] = {}
    for clip in clips:
        groups.setdefault(clip["path"], []).append(clip)
    return groups


def earlier_decisions(config, stage: str) -> dict:
    """Every setting (thresholds included) of the enabled stages before `stage`: for stages that
    work only on the clips those thresholds keep."""
    from curate.sections import fingerprint_fields
    from stages import STAGES

    before = list(STAGES)[:list(STAGES).index(stage)]
    return {name: fingerprint_fields(config.stage_section(name), with_decisions=True) for name in before
            if config.stage_section(name).enabled}
