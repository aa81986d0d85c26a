"""Commands for a run on Slurm: submit, rerun, status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..arrayspec import compact
from ..errors import CurateError
from .app import (
    CalibrationOpt,
    ConfigOpt,
    JsonOpt,
    SampleSizeOpt,
    SkipUploadOpt,
    WorkdirConfigOpt,
    WorkdirOpt,
    _console,
    app,
    resolve_workdir,
)
from .views import report_submission, status_table


def _scheduler_view(run_dir, num_parts: int, slurm_view=None):
    """Slurm's view when the run was submitted, plus any live `curate local`'s queue; None without either.
    `slurm_view`: the one of the last refresh (it caches squeue/sacct); the local queue is read anew."""
    from ..local_queue import CombinedView, LocalQueueView
    from ..slurm_state import SlurmView

    view = slurm_view or SlurmView(run_dir)
    local = LocalQueueView(run_dir, num_parts)
    views = [v for v in (view if view.has_jobs else None, local if local.active else None) if v is not None]
    return None if not views else views[0] if len(views) == 1 else CombinedView(*views)


@app.command()
def status(
    workdir: Optional[Path] = WorkdirOpt,
    config: Optional[Path] = WorkdirConfigOpt,
    as_json: bool = JsonOpt,
    watch: bool = typer.Option(False, "--watch", help="Refresh until nothing is running, pending or queued by a "
                                                      "`curate local` (Ctrl-C stops)."),
    interval: float = typer.Option(10.0, help="Seconds between refreshes with --watch."),
    wide: bool = typer.Option(False, "--wide", help="Also the mean task and workers per stage, the ETA in full and "
                                                    "every failed index (the table is wider than 80 columns)."),
):
    """Per stage: done / running / pending / failed / blocked / not started, with failure reasons.

    Reads the markers, plus one batched squeue and sacct call when the run was submitted to Slurm.
    """
    import time

    from ..plan import load_plan
    from ..rundir import RunDir
    from ..slurm_state import SlurmView
    from ..status import status_document

    run_dir = RunDir.at(resolve_workdir(workdir, config))
    plan = load_plan(run_dir)
    slurm_view = SlurmView(run_dir)
    doc = status_document(run_dir, plan, _scheduler_view(run_dir, plan.num_parts, slurm_view))
    if as_json and not watch:
        print(json.dumps(doc))
        return
    console = _console(stderr=as_json)  # --watch --json: the live table on stderr, the last state as JSON on stdout
    if not watch:
        console.print(status_table(doc, wide))
        return
    from rich.live import Live

    def active(d):
        return any(s["running"] or s["pending"] for s in d["stages"].values())

    try:
        with Live(status_table(doc, wide), console=console, refresh_per_second=1) as live:
            while active(doc):
                time.sleep(interval)
                doc = status_document(run_dir, plan, _scheduler_view(run_dir, plan.num_parts, slurm_view))
                live.update(status_table(doc, wide))
    except KeyboardInterrupt:
        pass
    if as_json:
        print(json.dumps(doc))


@app.command()
def submit(
    config: Optional[Path] = ConfigOpt,
    workdir: Optional[Path] = typer.Option(None, "--workdir", "-w", envvar="CURATE_WORKDIR",
                                           help="Run directory (default: `workdir:` in the config)."),
    input_dir: Optional[Path] = typer.Option(None, "--input-dir", "-i", help="Directory of videos (recursive)."),
    stage: str = typer.Option("all", "--stage", "-s", help="all, or stages like fetch,split."),
    array: Optional[str] = typer.Option(None, "--array", "-a",
                                        help="Indices, e.g. 0-999, 3,17,40-45, 0-999%50 (default: every index)."),
    parts: Optional[int] = typer.Option(None, help="Number of parts when building the manifest."),
    rebuild_manifest: bool = typer.Option(False, help="Replace a different existing manifest."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every sbatch script and array spec; submit nothing."),
    skip_upload: bool = SkipUploadOpt,
    calibration: bool = CalibrationOpt,
    sample_size: int = SampleSizeOpt,
    as_json: bool = JsonOpt,
):
    """Submit one Slurm array job per stage; index i of each stage waits for index i of the one before."""
    from ..arrayspec import parse_spec
    from ..calibrate import calibration_indices
    from ..executors.slurm import submit as slurm_submit
    from ..prepare import prepare_run, skipped_stages, stage_list

    run_dir, plan, _ = prepare_run(workdir, config, input_dir, rebuild_manifest, parts,
                                   skip_stages=skipped_stages(calibration, skip_upload))
    indices, throttle = parse_spec(array, plan.num_parts) if array else (list(range(plan.num_parts)), None)
    if calibration:
        indices = calibration_indices(run_dir, indices, sample_size)
        if not as_json:
            _console(stderr=True).print(f"calibration: {len(indices)} indices for about {sample_size} scored clips; "
                                        f"when they finish: curate calibrate -w {run_dir.root}")
    sub = slurm_submit(run_dir, plan, stage_list(plan, stage), indices, throttle, dry_run=dry_run)
    report_submission(sub, as_json, dry_run)


@app.command()
def rerun(
    workdir: Optional[Path] = WorkdirOpt,
    config: Optional[Path] = WorkdirConfigOpt,
    stage: Optional[str] = typer.Option(None, "--stage", "-s",
                                        help="Start at this stage (default: where each failed)."),
    failed: bool = typer.Option(False, "--failed", help="Every failed or blocked index."),
    indices: Optional[str] = typer.Option(None, "--indices", help="Explicit indices, e.g. 3,17,40-45."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch scripts; submit nothing."),
    as_json: bool = JsonOpt,
):
    """Resubmit just the failed (or given) indices, with their later stages chained; done work is never redone."""
    from ..arrayspec import parse_spec
    from ..executors.slurm import submit as slurm_submit
    from ..plan import load_plan
    from ..rundir import RunDir
    from ..status import rerun_selection, status_document

    if failed == (indices is not None):
        raise CurateError("give exactly one of --failed or --indices")
    run_dir = RunDir.at(resolve_workdir(workdir, config))
    plan = load_plan(run_dir)
    doc = status_document(run_dir, plan, _scheduler_view(run_dir, plan.num_parts))
    stages = plan.stages
    if stage is not None:
        plan.check_stage(stage)
        stages = stages[stages.index(stage):]
    chosen, busy = rerun_selection(doc, stages, parse_spec(indices, plan.num_parts)[0] if indices is not None else None)
    if not chosen and not busy:  # only --failed can come back empty: --indices names at least one
        _console(stderr=True).print("nothing failed: no index to rerun")
        return
    if busy:
        _console(stderr=True).print(f"[yellow]left out, still queued or running[/]: {compact(busy)}")
        if not chosen:
            return
    sub = slurm_submit(run_dir, plan, stages, chosen, dry_run=dry_run)
    report_submission(sub, as_json, dry_run)
