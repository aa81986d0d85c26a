"""Commands that read or describe a run's results and inputs: export, calibrate, shards, models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import CurateError
from .app import ConfigOpt, JsonOpt, ThresholdsOpt, WorkdirConfigOpt, WorkdirOpt, _console, app, resolve_workdir
from .views import clip_progress, print_models, print_publish_report, print_shards, print_summary


@app.command("export")
def export_cmd(
    workdir: Optional[Path] = WorkdirOpt,
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="A config: its `workdir:` is the run directory (when --workdir and CURATE_WORKDIR "
                                     "are not given); its clips: section says how --output-dir files are written."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Default: WORKDIR/metadata/clips.<format>."),
    output_dir: Optional[Path] = typer.Option(
        None, "--output-dir", help="Also publish the kept clips here as a dataset `datasets` loads: data/<input "
                                   "path>.mp4 (a whole video) or data/<input path>/<clip id>.mp4, metadata.parquet, "
                                   "curation/clips.parquet, README.md."),
    copy_mode: str = typer.Option("auto", "--copy-mode",
                                  help="With --output-dir: auto (link whole videos, encode clips cut out of longer "
                                       "ones), link (hard link, else symlink), copy, none (tables only) or encode "
                                       "(the clips: settings)."),
    resize: Optional[str] = typer.Option(None, "--resize", help="With --output-dir: none, 720p, 512 or 256 "
                                                                 "(instead of clips.resize)."),
    fit: Optional[str] = typer.Option(None, "--fit", help="With --resize 512/256: crop or pad."),
    fps: Optional[float] = typer.Option(None, "--fps", help="With --output-dir: cap the frame rate of written clips."),
    thresholds: Optional[Path] = ThresholdsOpt,
    as_json: bool = JsonOpt,
):
    """Write the final table: a row per clip plus a row per video that gave no clip."""
    from ..export import FORMATS, export, summary
    from ..plan import load_plan
    from ..rundir import RunDir

    if fmt not in FORMATS:
        raise CurateError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    run_dir = RunDir.at(resolve_workdir(workdir, config))
    plan = load_plan(run_dir)
    clips_cfg = export_clips(plan.config.clips, config, resize, fit, fps)
    if thresholds is not None:
        import dataclasses

        from ..thresholds import with_thresholds

        plan = dataclasses.replace(plan, config=with_thresholds(plan.config, thresholds))
    with clip_progress(enabled=not as_json) as on_clip:
        out, table, incomplete = export(run_dir, plan, fmt, output, progress=on_clip)
    doc = {"workdir": str(run_dir.root), "table": str(out), "incomplete_indices": incomplete, **summary(table)}
    if output_dir is not None:
        doc.update(publish_output(table, output_dir, copy_mode, clips_cfg, as_json, plan=plan))
    if as_json:
        print(json.dumps(doc))
    else:
        print_summary(doc)
        if incomplete:
            _console().print(f"[yellow]{incomplete} indices are not finished[/]: their videos are "
                             "`incomplete` rows; see `curate status`")


def export_clips(clips, config_path: Optional[Path], resize: Optional[str], fit: Optional[str],
                 fps: Optional[float]):
    """The clip settings export writes with: the run's, a --config file's clips: section, then the flags."""
    from pydantic import ValidationError

    from ..config import ClipsConfig, load_yaml

    doc = clips.model_dump()
    if config_path is not None:
        if not config_path.is_file():
            raise CurateError(f"--config {config_path}: no such file")
        given = load_yaml(config_path.read_text(), str(config_path)) or {}
        if not isinstance(given, dict) or not isinstance(given.get("clips", {}), dict):
            raise CurateError(f"--config {config_path}: expected a clips: section, e.g. clips: {{resize: '512'}}")
        doc.update(given.get("clips") or {})
    doc.update({k: v for k, v in (("resize", resize), ("fit", fit), ("fps", fps)) if v is not None})
    try:
        return ClipsConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CurateError(f"clips.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def publish_output(table, output_dir: Path, copy_mode: str, clips_cfg, quiet: bool, bar: bool = True,
                   plan=None) -> dict:
    """--output-dir of export and offline-filter: write the files and the tables, say what happened once."""
    from ..publish import publish

    card = None
    if plan is not None:
        from ..card import card_text
        from ..hashing import stable_hash

        upload = getattr(plan.config, "upload", None)

        def card(tree):
            return card_text(tree, plan.config.model_copy(update={"clips": clips_cfg}),
                             fingerprint=stable_hash(plan.fingerprints)[:16],
                             license_id=getattr(upload, "license", None) or "other")

    with clip_progress(enabled=bar and not quiet) as on_file:
        _, report = publish(table, output_dir.expanduser().resolve(), copy_mode, clips_cfg, progress=on_file,
                            card=card)
    doc = {"output_dir": str(output_dir.expanduser().resolve()), "copy_mode": copy_mode,
           "files_written": report.written, "files_skipped": report.skipped, "files_failed": report.failed}
    if not quiet:
        print_publish_report(doc, report)
    return doc


@app.command()
def calibrate(
    workdir: Optional[Path] = WorkdirOpt,
    config: Optional[Path] = WorkdirConfigOpt,
    sample_size: Optional[int] = typer.Option(None, "--sample-size", help="Use a random sample of this many clips."),
    quantiles: str = typer.Option("0.1,0.4,0.7,0.9", "--quantiles", help="Comma-separated quantiles to report."),
    thresholds: Optional[Path] = ThresholdsOpt,
    as_json: bool = JsonOpt,
):
    """Score quantiles, histograms, retention per check and an HTML report with thumbnails near each threshold."""
    from ..calibrate import calibrate as run_calibration
    from ..plan import load_plan
    from ..rundir import RunDir

    try:
        wanted = tuple(float(q) for q in quantiles.split(","))
    except ValueError:
        raise CurateError(f"--quantiles {quantiles!r}: give numbers between 0 and 1, e.g. 0.1,0.5,0.9") from None
    if not all(0 <= q <= 1 for q in wanted):
        raise CurateError(f"--quantiles {quantiles!r}: every quantile is between 0 and 1")
    run_dir = RunDir.at(resolve_workdir(workdir, config)).require()
    plan = load_plan(run_dir)
    config = None
    if thresholds is not None:
        from ..thresholds import with_thresholds

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
    from ..hub import list_files
    from ..rundir import atomic_write_text

    files = list_files(repo, revision, pattern=pattern)
    if not files:
        raise CurateError(f"dataset {repo}@{revision} has no files" + (f" matching {pattern!r}" if pattern else ""))
    total = sum(f.size for f in files)
    if output is not None:
        lines = [f"# curate shards --repo {repo} --revision {revision}"
                 + (f" --pattern '{pattern}'" if pattern else ""),
                 f"# {len(files)} files, {total:,} bytes; use as input.shards_file with input.hf_repo: {repo}"]
        atomic_write_text(output, "\n".join(lines + [f"{f.path}  # {f.size} bytes" for f in files]) + "\n")
    if as_json:
        print(json.dumps({"repo": repo, "revision": revision, "files": [{"path": f.path, "size": f.size}
                                                                        for f in files], "bytes": total,
                          "output": str(output) if output else None}))
        return
    print_shards(repo, revision, files, total)
    if output is not None:
        _console().print(f"wrote {output}: set input.hf_repo: {repo} and input.shards_file: {output}")


@app.command()
def models(
    config: Optional[Path] = ConfigOpt,
    workdir: Optional[Path] = typer.Option(None, "--workdir", "-w", help="Read the config of this run instead."),
    check: bool = typer.Option(False, "--check",
                               help="Also load every enabled scorer (finds wrong or broken weights)."),
    as_json: bool = JsonOpt,
):
    """Every model the pipeline can use: where its weights are looked for and whether they are there."""
    from ..config import load_config
    from ..models_report import model_rows

    if workdir is not None:
        from ..plan import load_plan
        from ..rundir import RunDir

        cfg = load_plan(RunDir.at(workdir)).config
    else:
        cfg = load_config(config)
    rows = model_rows(cfg, check=check)
    missing = [r["model"] for r in rows if r["enabled"] and (not r["found"] or r.get("loads") not in (None, "ok"))]
    if as_json:
        print(json.dumps(rows))
        raise typer.Exit(1 if missing else 0)
    print_models(rows, missing)
    if missing:
        raise typer.Exit(1)
