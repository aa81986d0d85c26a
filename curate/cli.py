"""`curate` command line. Heavy packages are imported inside the commands that need them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import CurateError

app = typer.Typer(
    help="Turn raw video collections into training-ready clip datasets, on Slurm or one machine.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

WorkdirOpt = typer.Option(..., "--workdir", "-w", envvar="CURATE_WORKDIR",
                          help="Run directory on the shared filesystem (all state lives here).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (see config.example.yaml).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object for scripts instead of tables.")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _prepare(workdir: Path, config: Optional[Path], input_dir: Optional[Path], rebuild: bool,
             parts: Optional[int] = None, part_size: Optional[str] = None):
    """Load + validate config, build (or reuse) the manifest, freeze run.yaml. No stage work."""
    from .config import load_config
    from .manifest import write_manifest
    from .plan import load_plan, write_plan
    from .rundir import RunDir

    run = RunDir.at(workdir)
    if config is None and input_dir is None and run.run_yaml.is_file():
        cfg = load_plan(run).config  # `curate local -w W` alone resumes the run as it was set up
    else:
        cfg = load_config(config)
    if input_dir is not None:
        cfg.input.shards, cfg.input.shards_file = [], None
        cfg.input.dir = str(input_dir.expanduser().resolve())
    if parts is not None:
        cfg.input.parts = parts
    if part_size is not None:
        cfg.input.part_size = part_size
    if not cfg.input.has_source():
        raise CurateError("no input given: pass --input-dir DIR or set input.dir / input.shards in the config")
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
    stage: str = typer.Option(..., "--stage", "-s", help="Stage to run (fetch, split, ...)."),
    index: Optional[int] = typer.Option(None, "--index", "-i",
                                        help="Array index; defaults to $SLURM_ARRAY_TASK_ID."),
    workdir: Path = WorkdirOpt,
    plan: Optional[Path] = typer.Option(None, help="Plan file to read (default: WORKDIR/run.yaml)."),
):
    """Run one task: one stage for one index. Idempotent; what compute nodes execute."""
    from .rundir import RunDir
    from .task import TaskInterrupted, run_task

    if index is None:
        env = os.environ.get("SLURM_ARRAY_TASK_ID")
        if env is None:
            raise CurateError("no --index given and SLURM_ARRAY_TASK_ID is not set")
        index = int(env)
    try:
        run_task(RunDir.at(workdir), stage, index, plan, log=lambda m: print(m, flush=True))
    except TaskInterrupted as exc:
        print(f"{stage}[{index}] stopped by {exc}", file=sys.stderr)
        raise typer.Exit(128 + exc.signum) from None
    except CurateError:
        raise
    except Exception as exc:
        print(f"{stage}[{index}] failed: {type(exc).__name__}: {exc} "
              f"(traceback in markers/{stage}/{index:05d}.failed)", file=sys.stderr)
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
    as_json: bool = JsonOpt,
):
    """Run every enabled stage over every index on this machine, then write the final table."""
    from .executors.local import LocalExecutor
    from .export import FORMATS, export, summary

    if fmt not in FORMATS:
        raise CurateError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run_dir, plan, info = _prepare(workdir, config, input_dir, rebuild_manifest, parts)
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
    out, table, incomplete = export(run_dir, plan, fmt)
    doc = {"workdir": str(run_dir.root), "table": str(out), "failed": {str(k): v for k, v in result.failed.items()},
           **summary(table)}
    if as_json:
        print(json.dumps(doc))
    else:
        for index, why in sorted(result.failed.items()):
            console.print(f"[red]index {index} failed[/] at {why}")
        _print_summary(doc)
    if result.failed:
        raise typer.Exit(1)


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


def _print_summary(doc: dict) -> None:
    console = _console()
    console.print(f"[bold green]final table[/] {doc['table']}")
    console.print(f"{doc.get('rows', 0)} rows from {doc.get('videos', 0)} videos: {doc.get('clips_ok', 0)} clips "
                  f"({doc.get('clip_hours', 0) * 60:.1f} min); by status {doc.get('by_status', {})}")


@app.command()
def status(
    workdir: Path = WorkdirOpt,
    as_json: bool = JsonOpt,
):
    """Per stage: done / running / pending / failed / blocked / not started, with failure reasons."""
    from .plan import load_plan
    from .rundir import RunDir
    from .status import STATES, status_document

    run_dir = RunDir.at(workdir)
    doc = status_document(run_dir, load_plan(run_dir))
    if as_json:
        print(json.dumps(doc))
        return
    from rich.table import Table

    table = Table(title=f"{doc['workdir']} ({doc['num_parts']} indices)")
    table.add_column("stage")
    for state in STATES:
        table.add_column(state.replace("_", " "), justify="right")
    table.add_column("mean task", justify="right")
    table.add_column("ETA", justify="right")
    for stage, s in doc["stages"].items():
        cells = [str(len(s[state])) for state in STATES]
        table.add_row(stage, *cells, f"{s['mean_task_s']:.1f} s" if s["mean_task_s"] is not None else "-",
                      f"{s['eta_s']} s" if s["eta_s"] else "-")
    console = _console()
    console.print(table)
    for stage, s in doc["stages"].items():
        for index, reason in s["failed"].items():
            console.print(f"[red]{stage}[{index}][/] {reason}")
    if doc.get("note"):
        console.print(f"[dim]{doc['note']}[/]")


@app.command("export")
def export_cmd(
    workdir: Path = WorkdirOpt,
    fmt: str = typer.Option("parquet", "--format", help="parquet or jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Default: WORKDIR/metadata/clips.<format>."),
    as_json: bool = JsonOpt,
):
    """Write the final table: a row per clip plus a row per video that gave no clip."""
    from .export import FORMATS, export, summary
    from .plan import load_plan
    from .rundir import RunDir

    if fmt not in FORMATS:
        raise CurateError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run_dir = RunDir.at(workdir)
    out, table, incomplete = export(run_dir, load_plan(run_dir), fmt, output)
    doc = {"workdir": str(run_dir.root), "table": str(out), "incomplete_indices": incomplete, **summary(table)}
    if as_json:
        print(json.dumps(doc))
    else:
        _print_summary(doc)
        if incomplete:
            _console().print(f"[yellow]{incomplete} indices are not finished[/]: their videos are "
                             "`incomplete` rows; see `curate status`")


def main() -> None:
    try:
        app()
    except CurateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
