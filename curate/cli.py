"""`curate` command line. Heavy packages are imported inside the commands that need them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from stages import STAGES

from .errors import CurateError

app = typer.Typer(
    help="Turn raw video collections into training-ready clip datasets, on Slurm or one machine.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

SkipUploadOpt = typer.Option(False, "--skip-upload", help="Leave the upload stage out of this run.")
CalibrationOpt = typer.Option(False, "--calibration",
                              help="Run fetch to score on just enough indices for --sample-size scored clips, then "
                                   "write the calibration report (curate calibrate).")
SampleSizeOpt = typer.Option(500, "--sample-size", help="Scored clips wanted for --calibration.")
ThresholdsOpt = typer.Option(None, "--thresholds",
                             help="YAML of threshold keys (config shape, e.g. filter: {motion: {min_area: 0.002}}) to use "
                                  "instead of the run's; reruns nothing.")
CALIBRATION_SKIPS = ("caption", "upload")  # calibration stops after score


def _skipped_stages(calibration: bool, skip_upload: bool) -> tuple[str, ...]:
    """Stages --calibration / --skip-upload leave out of this run's plan."""
    return CALIBRATION_SKIPS if calibration else ("upload",) if skip_upload else ()

WorkdirOpt = typer.Option(..., "--workdir", "-w", envvar="CURATE_WORKDIR",
                          help="Run directory on the shared filesystem (all state lives here).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (see config.example.yaml).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object for scripts instead of tables.")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _prepare(workdir: Optional[Path], config: Optional[Path], input_dir: Optional[Path], rebuild: bool,
             parts: Optional[int] = None, part_size: Optional[str] = None, config_obj=None,
             skip_stages: tuple[str, ...] = ()):
    """Load + validate config, build (or reuse) the manifest, freeze run.yaml. No stage work."""
    from .config import load_config
    from .manifest import write_manifest
    from .plan import load_plan, write_plan
    from .rundir import RunDir

    cfg = config_obj if config_obj is not None else (load_config(config) if config is not None else None)
    if workdir is None:
        if cfg is None or not cfg.workdir:
            raise CurateError("no run directory: pass --workdir DIR or set `workdir:` in the config")
        workdir = Path(cfg.workdir)
    run = RunDir.at(workdir)
    if cfg is None:
        # `curate local -w W` alone resumes the run as it was set up
        cfg = load_plan(run).config if input_dir is None and run.run_yaml.is_file() else load_config(None)
    elif input_dir is None and not cfg.input.has_source() and run.run_yaml.is_file():
        cfg.input = load_plan(run).config.input  # a new config for an existing run keeps its input
    if input_dir is not None:
        cfg.input.shards, cfg.input.shards_file, cfg.input.hf_repo, cfg.input.pattern = [], None, None, None
        cfg.input.dir = str(input_dir.expanduser().resolve())
    if parts is not None:
        cfg.input.parts = parts
    if part_size is not None:
        cfg.input.part_size = part_size
    for name in skip_stages:  # --skip-upload, --calibration: these stages are left out of this run's plan
        cfg.stage_section(name).enabled = False
    if not cfg.input.has_source():
        raise CurateError("no input given: pass --input-dir DIR or set input.dir, input.hf_repo or input.shards in the config")
    cfg.workdir = str(run.root)
    run.root.mkdir(parents=True, exist_ok=True)
    info = write_manifest(run, cfg.input, rebuild=rebuild)
    write_plan(run.run_yaml, cfg, info)
    return run, load_plan(run), info


@app.command()
def manifest(
    workdir: Path = WorkdirOpt,
    input_dir: Optional[Path] = typer.Option(None, "--input-dir", "-i", help="Directory of videos (recursive)."),
    config: Optional[Path] = ConfigOpt,
    parts: Optional[int] = typer.Option(None, help="Number of parts (array indices)."),
    part_size: Optional[str] = typer.Option(None, help="Target bytes per part, e.g. 2GB (when --parts is unset)."),
    rebuild_manifest: bool = typer.Option(False, help="Replace a different existing manifest."),
    as_json: bool = JsonOpt,
):
    """Write manifests/part-NNNNN.parquet: the input units of each array index, balanced by bytes."""
    _, _, info = _prepare(workdir, config, input_dir, rebuild_manifest, parts, part_size)
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
    workdir: Path = WorkdirOpt,
    plan: Optional[Path] = typer.Option(None, help="Plan file to read (default: WORKDIR/run.yaml)."),
):
    """Run one task: one stage for one index. Idempotent; what compute nodes execute."""
    from .rundir import RunDir
    from .secrets import scrub
    from .slurm_cli import job_alive
    from .task import RequeueLimitReached, TaskInterrupted, run_task

    if index is None:
        env = os.environ.get("SLURM_ARRAY_TASK_ID")
        if env is None:
            raise CurateError("no --index given and SLURM_ARRAY_TASK_ID is not set")
        index = int(env)
    try:
        run_task(RunDir.at(workdir), stage, index, plan, job_alive=job_alive,
                 log=lambda m: print(scrub(m), flush=True))
    except RequeueLimitReached as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(exc.exit_code)  # as below: no interpreter teardown under running decoder threads
    except TaskInterrupted as exc:
        print(f"{stage}[{index}] stopped by {exc}; claim released, nothing written", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Skip interpreter teardown: decoder threads still running in native code would abort it.
        os._exit(128 + exc.signum)
    except CurateError:
        raise
    except Exception as exc:
        print(scrub(f"{stage}[{index}] failed: {type(exc).__name__}: {exc} "
                    f"(traceback in markers/{stage}/{index:05d}.failed)"), file=sys.stderr)
        raise typer.Exit(1) from None


@app.command()
def local(
    workdir: Path = WorkdirOpt,
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
    from .executors.local import LocalExecutor
    from .export import FORMATS, export, summary

    if fmt not in FORMATS:
        raise CurateError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run_dir, plan, info = _prepare(workdir, config, input_dir, rebuild_manifest, parts,
                                   skip_stages=_skipped_stages(calibration, skip_upload))
    if calibration:
        return _local_calibration(run_dir, plan, workers or plan.config.local.workers, sample_size, progress,
                                  as_json)
    n_workers = workers or plan.config.local.workers
    console = _console(stderr=True)
    if not as_json:
        console.print(f"run directory {run_dir.root}: {info['num_parts']} parts, {info['num_units']} units, "
                      f"stages {' -> '.join(plan.stages)}, {n_workers} workers")
    with _local_progress(plan, enabled=progress and not as_json) as on_event:
        try:
            result = LocalExecutor(run_dir, plan, n_workers, progress=on_event).execute()
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: running tasks were stopped and released their claims; "
                          "run the same command again to finish")
            raise typer.Exit(130) from None
    with _clip_progress(enabled=progress and not as_json) as on_clip:
        out, table, incomplete = export(run_dir, plan, fmt, progress=on_clip)
    doc = {"workdir": str(run_dir.root), "table": str(out), "failed": {str(k): v for k, v in result.failed.items()},
           **summary(table)}
    if "upload" in plan.stages:
        doc["uploaded_to"] = plan.config.upload.destination(run_dir.root)
    if as_json:
        print(json.dumps(doc))
    else:
        for index, why in sorted(result.failed.items()):
            console.print(f"[red]index {index} failed[/] at {why}")
        _print_summary(doc)
    if result.failed:
        raise typer.Exit(1)


def _local_calibration(run_dir, plan, workers: int, sample_size: int, progress: bool, as_json: bool) -> None:
    """Run indices in order, a batch at a time, until sample_size clips are scored; then report."""
    from .calibrate import calibrate, calibration_indices, scored_clips
    from .executors.local import LocalExecutor

    everything = list(range(plan.num_parts))
    done: list[int] = []
    while len(done) < len(everything):
        have = scored_clips(run_dir, plan, done)
        if done and have >= sample_size:
            break
        batch = calibration_indices(run_dir, [i for i in everything if i not in done], sample_size - have)
        with _local_progress(plan, enabled=progress and not as_json) as on_event:
            result = LocalExecutor(run_dir, plan, workers, progress=on_event).execute(batch)
        done += batch
        if result.failed and not as_json:
            for index, why in sorted(result.failed.items()):
                _console(stderr=True).print(f"[red]index {index} failed[/] at {why}")
    report = calibrate(run_dir, plan, sample_size=sample_size, console=None if as_json else _console())
    if as_json:
        print(json.dumps(report.summary()))


class _local_progress:
    """A rich progress bar per stage, fed by the executor's start/done/failed events."""

    def __init__(self, plan, enabled: bool):
        self.plan, self.enabled = plan, enabled

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=_console(True))
        self.tasks = {s: self.bar.add_task(s, total=self.plan.num_parts, note="") for s in self.plan.stages}
        self.failed = {s: 0 for s in self.plan.stages}
        self.bar.start()
        return self.event

    def event(self, stage: str, index: int, kind: str) -> None:
        if kind == "done":
            self.bar.advance(self.tasks[stage])
        elif kind == "failed":
            self.failed[stage] += 1
            self.bar.update(self.tasks[stage], note=f"[red]{self.failed[stage]} failed[/]")

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.stop()
        return False


class _clip_progress:
    """A progress bar for writing the kept clips' files at export."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __enter__(self):
        return self.update if self.enabled else None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from rich.progress import Progress

            self.bar = Progress(console=_console(True))
            self.task = self.bar.add_task("clips", total=total)
            self.bar.start()
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _print_summary(doc: dict) -> None:
    console = _console()
    console.print(f"[bold green]final table[/] {doc['table']}")
    console.print(f"{doc.get('rows', 0)} rows from {doc.get('videos', 0)} videos: {doc.get('clips_ok', 0)} clips "
                  f"({doc.get('clip_hours', 0) * 60:.1f} min); by status {doc.get('by_status', {})}")
    if doc.get("uploaded_to"):
        console.print(f"[bold green]uploaded[/] kept clips and metadata to {doc['uploaded_to']}")


def _scheduler_view(run_dir):
    from .slurm_state import SlurmView

    view = SlurmView(run_dir)
    return view if view.has_jobs else None


def _status_table(doc: dict):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from .status import STATES

    table = Table(title=f"{doc['workdir']} ({doc['num_parts']} indices)")
    table.add_column("stage")
    for state in STATES:
        table.add_column(state.replace("_", " "), justify="right")
    table.add_column("per h", justify="right")
    table.add_column("ETA", justify="right")
    lines = []
    for stage, s in doc["stages"].items():
        cells = [str(len(s[state])) for state in STATES]
        eta = s["eta_s"]
        table.add_row(stage, *cells, f"{s['tasks_per_hour']:.0f}" if s["tasks_per_hour"] else "-",
                      f"{eta // 3600}h{eta % 3600 // 60:02d}m{eta % 60:02d}s" if eta else "-")
        for index, reason in s["failed"].items():
            lines.append(Text.assemble((f"{stage}[{index}] ", "red"), reason))
        if s["blocked"]:
            lines.append(Text(f"{stage} blocked by a failed earlier stage: {compact_list(s['blocked'])}", "yellow"))
    merge = doc.get("merge")
    if merge:
        where = f": {merge['table']}" if merge["state"] == "done" and merge["table"] else ""
        why = f" ({merge['reason']})" if merge.get("reason") and merge["state"] != "done" else ""
        lines.append(Text(f"final table (job {merge['job_id']}): {merge['state']}{why}{where}",
                          "red" if merge["state"] == "failed" else ""))
    caption = doc.get("progress", {}).get("caption")
    if caption:
        lines.append(Text(f"captions: {caption['captions']} of {caption['clips']} clips so far"
                          f"{' (' + str(caption['errors']) + ' without: see caption_error)' if caption['errors'] else ''}; "
                          f"tokens {caption['tokens_in']:,} in / {caption['tokens_out']:,} out; "
                          f"cost reported ${caption['cost_usd']:.4f}"))
    if doc.get("note"):
        lines.append(Text(doc["note"], "dim"))
    return Group(table, *lines)


def compact_list(indices: list[int]) -> str:
    from .arrayspec import compact

    return compact(indices)


@app.command()
def status(
    workdir: Path = WorkdirOpt,
    as_json: bool = JsonOpt,
    watch: bool = typer.Option(False, "--watch", help="Refresh until nothing is running or pending (Ctrl-C stops)."),
    interval: float = typer.Option(10.0, help="Seconds between refreshes with --watch."),
):
    """Per stage: done / running / pending / failed / blocked / not started, with failure reasons.

    Reads the markers, plus one batched squeue and sacct call when the run was submitted to Slurm.
    """
    import time

    from .plan import load_plan
    from .rundir import RunDir
    from .status import status_document

    run_dir = RunDir.at(workdir)
    plan = load_plan(run_dir)
    view = _scheduler_view(run_dir)
    doc = status_document(run_dir, plan, view)
    if as_json and not watch:
        print(json.dumps(doc))
        return
    console = _console()
    if not watch:
        console.print(_status_table(doc))
        return
    from rich.live import Live

    def active(d):
        return any(s["running"] or s["pending"] for s in d["stages"].values())

    try:
        with Live(_status_table(doc), console=console, refresh_per_second=1) as live:
            while active(doc):
                time.sleep(interval)
                doc = status_document(run_dir, plan, view)
                live.update(_status_table(doc))
    except KeyboardInterrupt:
        pass
    if as_json:
        print(json.dumps(doc))


def _stage_list(plan, stage: str) -> list[str]:
    if stage == "all":
        return plan.stages
    chosen = [s.strip() for s in stage.split(",") if s.strip()]
    for s in chosen:
        plan.check_stage(s)
    return [s for s in plan.stages if s in chosen]


def _report_submission(sub, as_json: bool, dry_run: bool) -> None:
    doc = sub.to_json()
    if as_json:
        print(json.dumps(doc))
        return
    if sub.already_done:
        _console(stderr=True).print(f"left out {sub.already_done} indices already done in every stage submitted")
    if not sub.stages:
        _console(stderr=True).print("every index is already done: nothing submitted")
        return
    if dry_run:
        return
    console = _console()
    for stage, chunks in sub.stages.items():
        for chunk in chunks:
            console.print(f"{stage:>8}: job {chunk.job_id} array {chunk.array} (indices {compact_list(chunk.indices)})")
    console.print(f"submission {sub.id}; watch with `curate status --workdir ... --watch`")


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
    from .arrayspec import parse_spec
    from .calibrate import calibration_indices
    from .executors.slurm import submit as slurm_submit

    run_dir, plan, _ = _prepare(workdir, config, input_dir, rebuild_manifest, parts,
                                skip_stages=_skipped_stages(calibration, skip_upload))
    indices, throttle = parse_spec(array) if array else (list(range(plan.num_parts)), None)
    if calibration:
        indices = calibration_indices(run_dir, indices, sample_size)
        if not as_json:
            _console(stderr=True).print(f"calibration: {len(indices)} indices for about {sample_size} scored clips; "
                                        f"when they finish: curate calibrate -w {run_dir.root}")
    sub = slurm_submit(run_dir, plan, _stage_list(plan, stage), indices, throttle, dry_run=dry_run)
    _report_submission(sub, as_json, dry_run)


@app.command()
def rerun(
    workdir: Path = WorkdirOpt,
    stage: Optional[str] = typer.Option(None, "--stage", "-s", help="Start at this stage (default: where each failed)."),
    failed: bool = typer.Option(False, "--failed", help="Every failed or blocked index."),
    indices: Optional[str] = typer.Option(None, "--indices", help="Explicit indices, e.g. 3,17,40-45."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch scripts; submit nothing."),
    as_json: bool = JsonOpt,
):
    """Resubmit just the failed (or given) indices, with their later stages chained; done work is never redone."""
    from .arrayspec import parse_spec
    from .executors.slurm import submit as slurm_submit
    from .plan import load_plan
    from .rundir import RunDir
    from .status import status_document

    if failed == (indices is not None):
        raise CurateError("give exactly one of --failed or --indices")
    run_dir = RunDir.at(workdir)
    plan = load_plan(run_dir)
    doc = status_document(run_dir, plan, _scheduler_view(run_dir))
    stages = plan.stages
    if stage is not None:
        plan.check_stage(stage)
        stages = stages[stages.index(stage):]
    if indices is not None:
        chosen, _ = parse_spec(indices)
    else:
        chosen = sorted({int(i) for s in stages for i in doc["stages"][s]["failed"]}
                        | {i for s in stages for i in doc["stages"][s]["blocked"]})
        if not chosen:
            _console(stderr=True).print("nothing failed: no index to rerun")
            return
    busy = sorted({i for s in stages for i in doc["stages"][s]["running"] + doc["stages"][s]["pending"]} & set(chosen))
    if busy:
        _console(stderr=True).print(f"[yellow]left out, still queued or running[/]: {compact_list(busy)}")
        chosen = [i for i in chosen if i not in busy]
        if not chosen:
            return
    sub = slurm_submit(run_dir, plan, stages, chosen, dry_run=dry_run)
    _report_submission(sub, as_json, dry_run)


@app.command("export")
def export_cmd(
    workdir: Path = WorkdirOpt,
    fmt: str = typer.Option("parquet", "--format", help="parquet or jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Default: WORKDIR/metadata/clips.<format>."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", help="Also write the kept clips (or whole videos) here, mirroring each input's "
                                   "relative path, with metadata.parquet and metadata.jsonl."),
    copy_mode: str = typer.Option("link", "--copy-mode",
                                  help="With --output-dir: link (hard link, else symlink), copy, none (metadata "
                                       "only) or encode (the clips: settings)."),
    thresholds: Optional[Path] = ThresholdsOpt,
    as_json: bool = JsonOpt,
):
    """Write the final table: a row per clip plus a row per video that gave no clip."""
    from .export import FORMATS, export, summary
    from .plan import load_plan
    from .rundir import RunDir

    if fmt not in FORMATS:
        raise CurateError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run_dir = RunDir.at(workdir)
    plan = load_plan(run_dir)
    if thresholds is not None:
        import dataclasses

        from .thresholds import with_thresholds

        plan = dataclasses.replace(plan, config=with_thresholds(plan.config, thresholds))
    with _clip_progress(enabled=not as_json) as on_clip:
        out, table, incomplete = export(run_dir, plan, fmt, output, progress=on_clip)
    doc = {"workdir": str(run_dir.root), "table": str(out), "incomplete_indices": incomplete, **summary(table)}
    if output_dir is not None:
        doc.update(_publish(table, output_dir, copy_mode, plan.config.clips, as_json))
    if as_json:
        print(json.dumps(doc))
    else:
        _print_summary(doc)
        if incomplete:
            _console().print(f"[yellow]{incomplete} indices are not finished[/]: their videos are "
                             "`incomplete` rows; see `curate status`")


def _publish(table, output_dir: Path, copy_mode: str, clips_cfg, quiet: bool, bar: bool = True) -> dict:
    """export --output-dir: write the files, say what happened once."""
    from .publish import publish

    with _clip_progress(enabled=bar and not quiet) as on_file:
        _, report = publish(table, output_dir.expanduser().resolve(), copy_mode, clips_cfg, progress=on_file)
    doc = {"output_dir": str(output_dir.expanduser().resolve()), "copy_mode": copy_mode,
           "files_written": report.written, "files_skipped": report.skipped, "files_failed": report.failed}
    if not quiet:
        console = _console()
        console.print(f"[bold green]output[/] {doc['output_dir']}: {report.written} files written ({copy_mode}), "
                      f"{report.skipped} already there, {report.failed} failed; metadata.parquet, metadata.jsonl")
        for note in report.notes[:10]:
            console.print(f"[yellow]note[/]: {note}")
    return doc


@app.command("offline-filter")
def offline_filter(
    input_dir: Path = typer.Option(..., "--input-dir", "-i", help="A tree of videos (searched recursively)."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Where the kept videos and metadata go."),
    copy_mode: str = typer.Option("link", "--copy-mode", help="link (default), copy, none or encode."),
    config: Optional[Path] = ConfigOpt,
    workdir: Optional[Path] = typer.Option(None, "--workdir", "-w",
                                           help="Run directory (default: OUTPUT_DIR/.curate-run)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Tasks at once (default: local.workers)."),
    progress: bool = typer.Option(True, help="Show a live progress display."),
    as_json: bool = JsonOpt,
):
    """Filter whole videos without splitting: `curate local` with split.kind none, then export to a mirror tree."""
    from .config import load_config
    from .executors.local import LocalExecutor
    from .export import export, summary

    cfg = load_config(config)
    cfg.split.kind = "none"
    if "max_s" not in cfg.split.model_fields_set:
        cfg.split.max_s = None  # whole videos of any length, unless the config caps them
    output_dir = output_dir.expanduser().resolve()
    run_dir, plan, info = _prepare(workdir or output_dir / ".curate-run", None, input_dir, False, config_obj=cfg)
    console = _console(stderr=True)
    if not as_json:
        console.print(f"{info['num_units']} videos under {input_dir}: stages {' -> '.join(plan.stages)} "
                      f"(run directory {run_dir.root})")
    with _local_progress(plan, enabled=progress and not as_json) as on_event:
        result = LocalExecutor(run_dir, plan, workers or plan.config.local.workers, progress=on_event).execute()
    _, table, _ = export(run_dir, plan)
    doc = {"workdir": str(run_dir.root), **summary(table),
           **_publish(table, output_dir, copy_mode, plan.config.clips, as_json, bar=progress)}
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


def reason_counts(table) -> dict[str, int]:
    """Rows not kept, by the first word of their reason (flash, ocr, failed, ...)."""
    import polars as pl

    if table.is_empty() or "reason" not in table.columns:
        return {}
    dropped = table.filter(~pl.col("keep").fill_null(False)) if "keep" in table.columns else table
    keys = dropped.select(pl.concat_str([pl.col("status"), pl.col("reason").fill_null("").str.extract(
        r"^([a-z_ ]+?)(?::|$)", 1).fill_null("")], separator=": ").str.strip_chars(": ").alias("why"))
    return {r["why"]: r["len"] for r in keys.group_by("why").len().sort("len", descending=True).to_dicts()}


@app.command()
def calibrate(
    workdir: Path = WorkdirOpt,
    sample_size: Optional[int] = typer.Option(None, "--sample-size", help="Use a random sample of this many clips."),
    quantiles: str = typer.Option("0.1,0.4,0.7,0.9", "--quantiles", help="Comma-separated quantiles to report."),
    thresholds: Optional[Path] = ThresholdsOpt,
    as_json: bool = JsonOpt,
):
    """Score quantiles, histograms, retention per check and an HTML report with thumbnails near each threshold."""
    from .calibrate import calibrate as run_calibration
    from .plan import load_plan
    from .rundir import RunDir

    try:
        wanted = tuple(float(q) for q in quantiles.split(","))
    except ValueError:
        raise CurateError(f"--quantiles {quantiles!r}: give numbers between 0 and 1, e.g. 0.1,0.5,0.9") from None
    if not all(0 <= q <= 1 for q in wanted):
        raise CurateError(f"--quantiles {quantiles!r}: every quantile is between 0 and 1")
    run_dir = RunDir.at(workdir).require()
    plan = load_plan(run_dir)
    config = None
    if thresholds is not None:
        from .thresholds import with_thresholds

        config = with_thresholds(plan.config, thresholds)
    report = run_calibration(run_dir, plan, sample_size=sample_size, quantiles=wanted, config=config,
                             console=None if as_json else _console())
    if as_json:
        print(json.dumps(report.summary()))


@app.command()
def shards(
    repo: str = typer.Option(..., "--repo", "-r", help="Hugging Face dataset id, e.g. org/videos."),
    pattern: Optional[str] = typer.Option(None, "--pattern", "-p", help="Glob on the file path, e.g. '*.tar'."),
    revision: str = typer.Option("main", "--revision", help="Branch, tag or commit."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write the list here, one path per line (input.shards_file)."),
    as_json: bool = JsonOpt,
):
    """List a Hugging Face dataset's files with their sizes (uses HF_TOKEN, HF_ENDPOINT)."""
    from .hub import list_files
    from .rundir import atomic_write_text

    files = list_files(repo, revision, pattern=pattern)
    if not files:
        raise CurateError(f"dataset {repo}@{revision} has no files" + (f" matching {pattern!r}" if pattern else ""))
    total = sum(f.size for f in files)
    if output is not None:
        lines = [f"# curate shards --repo {repo} --revision {revision}" + (f" --pattern '{pattern}'" if pattern else ""),
                 f"# {len(files)} files, {total:,} bytes; use as input.shards_file with input.hf_repo: {repo}"]
        atomic_write_text(output, "\n".join(lines + [f"{f.path}  # {f.size} bytes" for f in files]) + "\n")
    if as_json:
        print(json.dumps({"repo": repo, "revision": revision, "files": [{"path": f.path, "size": f.size}
                                                                        for f in files], "bytes": total,
                          "output": str(output) if output else None}))
        return
    from rich.table import Table

    table = Table(title=f"{repo}@{revision}: {len(files)} files, {total / 1e9:.2f} GB")
    table.add_column("path", overflow="fold")
    table.add_column("bytes", justify="right")
    for f in files:
        table.add_row(f.path, f"{f.size:,}")
    _console().print(table)
    if output is not None:
        _console().print(f"wrote {output}: set input.hf_repo: {repo} and input.shards_file: {output}")


@app.command()
def models(
    config: Optional[Path] = ConfigOpt,
    workdir: Optional[Path] = typer.Option(None, "--workdir", "-w", help="Read the config of this run instead."),
    check: bool = typer.Option(False, "--check", help="Also load every enabled scorer (finds wrong or broken weights)."),
    as_json: bool = JsonOpt,
):
    """Every model the pipeline can use: where its weights are looked for and whether they are there."""
    from .config import load_config
    from .models_report import model_rows

    if workdir is not None:
        from .plan import load_plan
        from .rundir import RunDir

        cfg = load_plan(RunDir.at(workdir)).config
    else:
        cfg = load_config(config)
    rows = model_rows(cfg, check=check)
    missing = [r["model"] for r in rows if r["enabled"] and (not r["found"] or r.get("loads") not in (None, "ok"))]
    if as_json:
        print(json.dumps(rows))
        raise typer.Exit(1 if missing else 0)
    from rich.table import Table

    table = Table(title="models (weights looked for where shown; HF files in the HF cache, HF_HOME)")
    for column in ("model", "enabled", "found", "weights"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["model"], "yes" if row["enabled"] else "no",
                      "[green]yes[/]" if row["found"] else "[red]no[/]", f"{row['weights']} ({row['where']})")
    _console().print(table)
    for row in rows:
        if row.get("loads") not in (None, "ok"):
            _console(stderr=True).print(f"[red]{row['model']} does not load[/]: {row['loads']}")
    if missing:
        _console(stderr=True).print(f"[red]enabled models without usable weights[/]: {', '.join(missing)}")
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except CurateError as exc:
        from .secrets import scrub

        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
