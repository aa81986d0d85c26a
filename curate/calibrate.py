"""Calibration: what the thresholds mean on this data, before the big run.

A lazy polars scan of every index's furthest stage part gives the clips and their scores; from
them: quantiles per score (metadata/calibration.parquet), a histogram per score with its current
threshold (PNG), the retention of each check and of all together, in clips and hours
(metadata/calibration_retention.parquet), and metadata/calibration.html, one self-contained page
that also shows, per threshold, thumbnails of the clips just above and just below it.
"""

from __future__ import annotations

import base64
import contextlib
import html
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .plan import Plan
from .rundir import RunDir, atomic_write_parquet, atomic_write_text

DEFAULT_QUANTILES = (0.1, 0.4, 0.7, 0.9)
THUMBS_PER_SIDE = 4


def stage_scan(run: RunDir, plan: Plan, indices: list[int] | None = None):
    """pl.LazyFrame of every clip of the given indices, from each index's furthest finished stage."""
    import polars as pl

    frames = []
    for index in range(plan.num_parts) if indices is None else indices:
        part = next((run.stage_part(s, index) for s in reversed(plan.stages) if run.stage_part(s, index).is_file()),
                    None)
        if part is not None:
            frames.append(pl.scan_parquet(part).with_columns(part=pl.lit(index, dtype=pl.Int64)))
    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed")


def candidates(lazy):
    """The clips the thresholds decide on: status ok, with a clip id."""
    import polars as pl

    return lazy.filter((pl.col("status") == "ok") & pl.col("clip_id").is_not_null())


def scored_clips(run: RunDir, plan: Plan, indices: list[int]) -> int:
    """Clips of these indices that have been through the last planned stage."""
    import polars as pl

    last = plan.stages[-1]
    parts = [run.stage_part(last, i) for i in indices if run.stage_part(last, i).is_file()]
    if not parts:
        return 0
    return int(candidates(pl.scan_parquet(parts)).select(pl.len()).collect().item())


def calibration_indices(run: RunDir, indices: list[int], wanted: int) -> list[int]:
    """The first indices that should hold `wanted` clips: one clip per input unit is assumed (a video
    gives at least one clip when it is kept at all), so this errs towards more indices."""
    from .manifest import manifest_part_units
    from .rundir import read_json

    info = read_json(run.manifest_info) or {}
    taken, units = [], 0
    for index in indices:
        if units >= max(wanted, 1):
            break
        taken.append(index)
        units += manifest_part_units(run, index, info)
    return taken


def score_columns(config, columns: dict) -> list[str]:
    """The score columns of this table: analyzer and scorer outputs, and every threshold's column."""
    from stages import STAGES

    from .decisions import run_checks

    known = {c for name, spec in STAGES.items() if config.stage_section(name).enabled
             for c, t in spec.load().columns(config.stage_section(name)).items() if t == "Float64"}
    known -= {"start_s", "end_s", "fps", "duration_s"}  # where a clip lies, not how good it is
    known |= {c for check in run_checks(config) for c in check.columns}
    return [c for c in columns if c in known and columns[c].is_numeric()]


@dataclass
class CalibrationReport:
    clips: int
    quantiles: object  # pl.DataFrame: score, count, mean, q..., threshold
    retention: object  # pl.DataFrame: check, kept_clips, kept_share, kept_hours
    html: Path
    images: list[Path] = field(default_factory=list)

    def summary(self) -> dict:
        return {"clips": self.clips, "html": str(self.html), "quantiles": self.quantiles.to_dicts(),
                "retention": self.retention.to_dicts()}


def score_values(clips, score: str):
    """The measured values of one score column (nulls and NaNs are clips it was not measured on)."""
    values = clips.get_column(score).drop_nulls()
    return values.drop_nans() if values.dtype.is_float() else values


def cell(value) -> str:
    """One table cell as text, for the terminal table and the HTML report alike."""
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def quantile_table(clips, scores: list[str], quantiles: tuple[float, ...], limits: dict):
    import polars as pl

    rows = []
    for score in scores:
        values = score_values(clips, score)
        row = {"score": score, "count": values.len(), "mean": float(values.mean()) if values.len() else None}
        for q in quantiles:
            row[f"q{round(q * 100):02d}"] = float(values.quantile(q, interpolation="linear")) if values.len() else None
        row["threshold"] = limits.get(score)
        rows.append(row)
    return pl.DataFrame(rows, schema={"score": pl.Utf8, "count": pl.Int64, "mean": pl.Float64,
                                      **{f"q{round(q * 100):02d}": pl.Float64 for q in quantiles},
                                      "threshold": pl.Float64})


def retention_table(clips, checks: list):
    """Per check and all together: clips and hours that pass (a null score passes, as at export)."""
    import polars as pl

    usable = [c for c in checks if all(col in clips.columns for col in c.columns)]
    total = clips.height
    hours = pl.col("clip_duration_s").fill_null(0).sum() / 3600
    rows = []
    per_check = [(c.name + (f" ({c.key} {c.limit:g})" if c.key else ""), c.fails) for c in usable]
    together = pl.any_horizontal([c.fails.fill_null(False) for c in usable]) if usable else pl.lit(False)
    for label, fails in [*per_check, ("all together", together)]:
        kept = clips.filter(~fails.fill_null(False))
        rows.append({"check": label, "kept_clips": kept.height,
                     "kept_share": round(kept.height / total, 4) if total else None,
                     "kept_hours": round(float(kept.select(hours).item() or 0), 4)})
    return pl.DataFrame(rows, schema={"check": pl.Utf8, "kept_clips": pl.Int64, "kept_share": pl.Float64,
                                      "kept_hours": pl.Float64})


def histogram(values: list[float], score: str, limit: float | None, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=90)
    ax.hist(values, bins=min(40, max(5, int(math.sqrt(len(values))) * 2)), color="#4c72b0")
    if limit is not None:
        ax.axvline(limit, color="#c44e52", linewidth=2, label=f"threshold {limit:g}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{score} ({len(values)} clips)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def thumbnail(row: dict) -> str | None:
    """A JPEG of the clip's middle frame as a data URI (None when the file is gone)."""
    path = row.get("path")
    if not path or not Path(path).is_file():
        return None
    middle = float(row.get("start_s") or 0) + float(row.get("clip_duration_s") or 0) / 2
    proc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-ss", f"{middle:.3f}", "-i", path, "-frames:v", "1",
                           "-vf", "scale=160:-2", "-f", "image2pipe", "-vcodec", "mjpeg", "-"],
                          capture_output=True, timeout=60)
    if proc.returncode != 0 or not proc.stdout:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(proc.stdout).decode()


def near_threshold(clips, column: str, limit: float) -> tuple[list[dict], list[dict]]:
    """The clips just below and just above `limit` on `column`."""
    import polars as pl

    scored = clips.filter(pl.col(column).is_not_null())
    below = scored.filter(pl.col(column) < limit).sort(column, descending=True).head(THUMBS_PER_SIDE).to_dicts()
    above = scored.filter(pl.col(column) >= limit).sort(column).head(THUMBS_PER_SIDE).to_dicts()
    return below, above


def _table_html(frame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = ""
    for row in frame.iter_rows():
        body += "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(path: Path, run: RunDir, report_parts: dict) -> None:
    sections = [f"<h1>curate calibration</h1><p>{html.escape(str(run.root))}: {report_parts['clips']} clips"
                f"{report_parts['sampled']}</p>",
                "<h2>Quantiles</h2>", _table_html(report_parts["quantiles"]),
                "<h2>Retention</h2><p>Clips and hours that pass each check, and all of them together "
                "(a clip without the score passes, as at export).</p>", _table_html(report_parts["retention"]),
                "<h2>Scores</h2>"]
    for score, image in report_parts["images"].items():
        data = base64.b64encode(image.read_bytes()).decode()
        sections.append(f"<h3>{html.escape(score)}</h3><img src='data:image/png;base64,{data}'>")
        for check, (below, above) in report_parts["thumbs"].get(score, []):
            sections.append(f"<p>{html.escape(check.name)}: {html.escape(check.key or '')} {check.limit:g} "
                            f"(a clip fails {check.fails_when} it)</p><div class='row'>")
            for side, rows in (("just below", below), ("just above", above)):
                sections.append(f"<div class='side'><b>{side}</b><br>")
                for row in rows:
                    uri = thumbnail(row)
                    img = f"<img src='{uri}'>" if uri else "<span class='gone'>(file gone)</span>"
                    sections.append(f"<figure>{img}<figcaption>{html.escape(str(row['clip_id']))}<br>"
                                    f"{score} {row[score]:.4g}</figcaption></figure>")
                sections.append("</div>")
            sections.append("</div>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:2px 8px;text-align:right}figure{display:inline-block;margin:4px;font-size:11px}"
             ".side{display:inline-block;vertical-align:top;margin-right:2em}.gone{color:#999}")
    atomic_write_text(path, f"<!doctype html><html><head><meta charset='utf-8'><title>curate calibration</title>"
                            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")


def calibrate(run: RunDir, plan: Plan, sample_size: int | None = None,
              quantiles: tuple[float, ...] = DEFAULT_QUANTILES, config=None, console=None) -> CalibrationReport:
    """Write the calibration outputs of a run (config: the run's, or one with proposed thresholds)."""
    from .decisions import run_checks
    from .errors import CurateError

    config = config or plan.config
    lazy = stage_scan(run, plan)
    if lazy is None:
        raise CurateError(f"{run.root}: no stage has finished an index yet; run some first "
                          "(curate local/submit --calibration --sample-size N)")
    clips = candidates(lazy).collect()
    total = clips.height
    sampled = ""
    if sample_size and total > sample_size:
        clips = clips.sample(sample_size, seed=0)
        sampled = f" (a random sample of {sample_size} of {total})"
    if clips.is_empty():
        raise CurateError(f"{run.root}: no clip with status ok in the finished indices; nothing to calibrate")
    checks = run_checks(config)
    limits = {c.columns[0]: c.limit for c in checks if c.limit is not None}
    scores = score_columns(config, dict(clips.schema))
    table = quantile_table(clips, scores, quantiles, limits)
    retention = retention_table(clips, checks)
    out = run.metadata
    atomic_write_parquet(out / "calibration.parquet", table)
    atomic_write_parquet(out / "calibration_retention.parquet", retention)
    images, thumbs = {}, {}
    for score in scores:
        values = score_values(clips, score).to_list()
        if not values:
            continue
        images[score] = histogram(values, score, limits.get(score), out / "calibration" / f"{score}.png")
        thumbs[score] = [(c, near_threshold(clips, score, c.limit)) for c in checks
                         if c.limit is not None and c.columns[0] == score]
    page = out / "calibration.html"
    write_html(page, run, {"clips": clips.height, "sampled": sampled, "quantiles": table, "retention": retention,
                           "images": images, "thumbs": thumbs})
    report = CalibrationReport(clips.height, table, retention, page, list(images.values()))
    if console is not None:
        show(report, console)
    return report


def calibrate_locally(run: RunDir, plan: Plan, workers: int, sample_size: int, progress=contextlib.nullcontext,
                      on_failed=None, console=None) -> CalibrationReport:
    """Run indices in order on this machine, a batch at a time, until sample_size clips are scored; then
    report. progress() gives a context whose value is the executor's event callback (or None); on_failed
    gets each batch's {index: why} of failed tasks."""
    from .executors.local import LocalExecutor

    everything = list(range(plan.num_parts))
    done: list[int] = []
    while len(done) < len(everything):
        have = scored_clips(run, plan, done)
        if done and have >= sample_size:
            break
        batch = calibration_indices(run, [i for i in everything if i not in done], sample_size - have)
        with progress() as on_event:
            result = LocalExecutor(run, plan, workers, progress=on_event).execute(batch)
        done += batch
        if result.failed and on_failed is not None:
            on_failed(result.failed)
    return calibrate(run, plan, sample_size=sample_size, console=console)


def show(report: CalibrationReport, console) -> None:
    from rich.table import Table

    for title, frame in (("score quantiles", report.quantiles), ("retention", report.retention)):
        table = Table(title=f"{title} ({report.clips} clips)")
        for column in frame.columns:
            table.add_column(column, justify="right" if frame[column].dtype.is_numeric() else "left")
        for row in frame.iter_rows():
            table.add_row(*(cell(v) for v in row))
        console.print(table)
    console.print(f"report: {report.html} (histograms in {report.html.parent / 'calibration'})")
