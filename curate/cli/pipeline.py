"""Commands that set up and run the pipeline: manifest, run, local, offline-filter."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from stages import STAGES

from ..errors import CurateError, ExitCode
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
from .results import publish_output
from .views import clip_progress, local_progress, print_failures, print_summary


@app.command()
def manifest(
    workdir: Optional[Path] = WorkdirOpt,
    input_dir: Optional[Path] = typer.Option(None, "--input-dir", "-i", help="Directory of videos (recursive)."),
    config: Optional[Path] = ConfigOpt,
    parts: Optional[int] = typer.Option(None, help="Number of parts (array indices)."),
    part_size: Optional[str] = typer.Option(None, help="Target bytes per part, e.g. 2GB (when --parts is unset)."),
    rebuild_manifest: bool = typer.Option(False, help="Replace a different existing manifest."),
    as_json: bool = JsonOpt,
):
    """Write manifests/part-NNNNN.parquet: the input units of each array index, balanced by bytes."""
    from ..prepare import prepare_run

    _, _, info = prepare_run(workdir, config, input_dir, rebuild_manifest, parts, part_size)
    if as_json:
        print(json.dumps(info))
        return
    console = _console()
    console.print(f"[bold]{info['num_parts']}[/] parts, {info['num_units']} units, "
                  f"{info['bytes'] / 1e6:.1f} MB -> {Path(workdir).resolve() / 'manifests'}")
    sizes = info["part_bytes"]
    console.print(f"part size: min {min(sizes) / 1e6:.1f} MB, max {max(sizes) / 1e6:.1f} MB")


@app.command()
def run(
    stage: str = typer.Option(..., "--stage", "-s", help="Stage to run: " + "; ".join(
        f"{spec.name} ({spec.help})" for spec in STAGES.values()) + "."),
    index: Optional[int] = typer.Option(None, "--index", "-i",
                                        help="Array index; defaults to $SLURM_ARRAY_TASK_ID."),
    workdir: Optional[Path] = WorkdirOpt,
    plan: Optional[Path] = typer.Option(None, help="Plan file to read (default: WORKDIR/run.yaml)."),
    config: Optional[Path] = WorkdirConfigOpt,
):
    """Run one task: one stage for one index. Idempotent; what compute nodes execute."""
    from ..faults import TaskInterrupted
    from ..rundir import RunDir
    from ..secrets import scrub
    from ..worker import run_one, stop_on_signal

    if index is None:
        env = os.environ.get("SLURM_ARRAY_TASK_ID")
        if env is None:
            raise CurateError("no --index given and SLURM_ARRAY_TASK_ID is not set")
        index = int(env)
    try:
        code = run_one(RunDir.at(resolve_workdir(workdir, config)), stage, index, plan,
                       log=lambda m: print(scrub(m), flush=True))
    except TaskInterrupted as exc:
        stop_on_signal(stage, index, exc)
    sys.stdout.flush()
    if code == ExitCode.REQUEUE_LIMIT:
        os._exit(code)  # no teardown either: the time limit stopped it mid-work
    if code:
        raise typer.Exit(code)


@app.command(hidden=True)
def preflight(
    workdir: Optional[Path] = WorkdirOpt,
    stage: str = typer.Option("all", "--stage", "-s", help="all, or stages like fetch,split."),
    plan: Optional[Path] = typer.Option(None, help="Plan file to read (default: WORKDIR/run.yaml)."),
    submitting: bool = typer.Option(False, "--submitting",
                                    help="On the submitting machine: a device it lacks is not a fault."),
):
    """Every stage's preflight before any work (what `local` and `submit` run first); exit 2 with the reason."""
    from ..plan import load_plan
    from ..prepare import stage_list
    from ..rundir import RunDir
    from ..task import preflight_stages

    run_dir = RunDir.at(resolve_workdir(workdir, None))
    chosen = load_plan(run_dir, plan)
    preflight_stages(run_dir, chosen, stage_list(chosen, stage), here=not submitting,
                     log=lambda m: print(m, file=sys.stderr))


@app.command()
def local(
    workdir: Optional[Path] = WorkdirOpt,
    input_dir: Optional[Path] = typer.Option(None, "--input-dir", "-i", help="Directory of videos (recursive)."),
    config: Optional[Path] = ConfigOpt,
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Tasks at once (default: local.workers)."),
    parts: Optional[int] = typer.Option(None, help="Number of parts when building the manifest."),
    rebuild_manifest: bool = typer.Option(False, help="Replace a different existing manifest."),
    fmt: str = typer.Option("parquet", "--format", help="Final table format: parquet or jsonl."),
    progress: bool = typer.Option(True, help="Show a live progress display."),
    skip_upload: bool = SkipUploadOpt,
    calibration: bool = CalibrationOpt,
    sample_size: int = SampleSizeOpt,
    as_json: bool = JsonOpt,
):
    """Run every enabled stage over every index on this machine, then write the final table."""
    from ..executors.local_workers import close_early, start_early

    # The workers start first: their imports run beside ours and the manifest's (~0.4 s each side).
    early = start_early(workdir, workers or 1) if workdir is not None and not calibration else []
    try:
        _local(workdir, input_dir, config, workers, parts, rebuild_manifest, fmt, progress, skip_upload,
               calibration, sample_size, as_json, early)
    finally:
        close_early(early)  # those the pool did not take out of `early` (it stopped first, or needed fewer)


def _local(workdir, input_dir, config, workers, parts, rebuild_manifest, fmt, progress, skip_upload, calibration,
           sample_size, as_json, early) -> None:
    from ..executors.local import LocalExecutor
    from ..export import FORMATS, export, summary
    from ..faults import TaskInterrupted
    from ..prepare import prepare_run, skipped_stages

    if fmt not in FORMATS:
        raise CurateError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run_dir, plan, info = prepare_run(workdir, config, input_dir, rebuild_manifest, parts,
                                      skip_stages=skipped_stages(calibration, skip_upload))
    n_workers = workers or plan.config.local.workers
    show = progress and not as_json
    if calibration:
        from ..calibrate import calibrate_locally

        report = calibrate_locally(run_dir, plan, n_workers, sample_size, progress=lambda: local_progress(plan, show),
                                   on_failed=None if as_json else print_failures,
                                   console=None if as_json else _console())
        if as_json:
            print(json.dumps(report.summary()))
        return
    console = _console(stderr=True)
    if not as_json:
        console.print(f"run directory {run_dir.root}: {info['num_parts']} parts, {info['num_units']} units, "
                      f"stages {' -> '.join(plan.stages)}, {n_workers} workers")
    with local_progress(plan, enabled=show) as on_event:
        try:
            result = LocalExecutor(run_dir, plan, n_workers, progress=on_event, early=early).execute()
        except (KeyboardInterrupt, TaskInterrupted) as exc:
            console.print("[yellow]interrupted[/]: running tasks were stopped and released their claims; "
                          "run the same command again to finish")
            raise typer.Exit(ExitCode.signalled(getattr(exc, "signum", signal.SIGINT))) from None
    with clip_progress(enabled=show) as on_clip:
        out, table, incomplete = export(run_dir, plan, fmt, progress=on_clip)
    doc = {"workdir": str(run_dir.root), "table": str(out), "failed": {str(k): v for k, v in result.failed.items()},
           **summary(table)}
    for name in plan.stages:  # what each stage has to say once the run is over, e.g. where it uploaded
        doc.update(STAGES[name].load().outcome(run_dir, plan.config.stage_section(name)))
    if as_json:
        print(json.dumps(doc))
    else:
        print_failures(result.failed)
        print_summary(doc)
    if result.failed:
        raise typer.Exit(1)


@app.command("offline-filter")
def offline_filter(
    input_dir: Path = typer.Option(..., "--input-dir", "-i", help="A tree of videos (searched recursively)."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where the kept videos and metadata go."),
    copy_mode: str = typer.Option("auto", "--copy-mode", help="auto (default: link whole videos the clips: settings "
                                                           "leave as they are), link, copy, none or encode."),
    config: Optional[Path] = ConfigOpt,
    workdir: Optional[Path] = typer.Option(None, "--workdir", "-w",
                                           help="Run directory (default: `workdir:` in --config, else "
                                                "OUTPUT_DIR/.curate-run)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Tasks at once (default: local.workers)."),
    progress: bool = typer.Option(True, help="Show a live progress display."),
    as_json: bool = JsonOpt,
):
    """Filter whole videos without splitting: `curate local` with split.kind none, then export to a mirror tree."""
    from stages import STAGES

    from ..config import load_config
    from ..executors.local import LocalExecutor
    from ..export import export, reason_counts, summary
    from ..prepare import prepare_run

    cfg = load_config(config)
    for name, spec in STAGES.items():  # every stage keeps each video whole (split: kind none)
        spec.load().whole_videos(cfg.stage_section(name))
    output_dir = output_dir.expanduser().resolve()
    workdir = workdir or (Path(cfg.workdir) if cfg.workdir else output_dir / ".curate-run")
    run_dir, plan, info = prepare_run(workdir, None, input_dir, False, config_obj=cfg)
    console = _console(stderr=True)
    if not as_json:
        console.print(f"{info['num_units']} videos under {input_dir}: stages {' -> '.join(plan.stages)} "
                      f"(run directory {run_dir.root})")
    with local_progress(plan, enabled=progress and not as_json) as on_event:
        result = LocalExecutor(run_dir, plan, workers or plan.config.local.workers, progress=on_event).execute()
    _, table, _ = export(run_dir, plan)
    doc = {"workdir": str(run_dir.root), **summary(table),
           **publish_output(table, output_dir, copy_mode, plan.config.clips, as_json, bar=progress, plan=plan)}
    doc["by_reason"] = reason_counts(table)
    doc["failed_indices"] = {str(k): v for k, v in result.failed.items()}
    if as_json:
        print(json.dumps(doc))
    else:
        out = _console()
        out.print(f"[bold]{doc.get('videos', 0)} videos in[/], {doc.get('clips_ok', 0)} kept "
                  f"({doc.get('clip_hours', 0):.3f} h) -> {output_dir}")
        for why, count in doc["by_reason"].items():
            out.print(f"  {count:6d}  {why}")
    if result.failed:
        raise typer.Exit(1)
