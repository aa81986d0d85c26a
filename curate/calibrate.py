"""Calibration: what the thresholds mean on this data, before the big run.

One lazy polars scan of every index's furthest finished stage part (one directory listing per stage
finds them) gives the clips and their scores, reading only the columns calibration needs. From them,
over every clip (or the `--sample-size` random sample):

- quantiles per score (metadata/calibration.parquet);
- the retention of each check and of all together, in clips and hours (metadata/calibration_retention.parquet);
- per score, the share of clips kept against the threshold (metadata/calibration_curves.parquet), for the
  direction of each check on it (a minimum keeps what is at or above, a maximum what is at or below; a
  score without a check gets the minimum's curve), with the current threshold marked;
- metadata/calibration.html, one self-contained page with a histogram and that curve per score (inline SVG,
  also written as metadata/calibration/<score>.svg) and thumbnails: for a threshold, the clips nearest to it
  on each side, searched over every clip (not just the sample); for a score without one, the clips at its
  quantiles. Each thumbnail is labelled with the file and the clip's time and links to the clip.
"""

from __future__ import annotations

import contextlib
import html
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from .plan import Plan
from .rundir import RunDir, atomic_write_parquet, atomic_write_text

DEFAULT_QUANTILES = (0.1, 0.4, 0.7, 0.9)
THUMBS_PER_SIDE = 4
THUMB_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)  # the clips shown for a score without a threshold
THUMB_WIDTH = 160
CURVE_POINTS = 200
# What a thumbnail and its label need, besides the scores.
CLIP_COLUMNS = ("clip_id", "relpath", "path", "clip_path", "start_s", "end_s", "clip_duration_s", "part")


def _furthest_parts(run: RunDir, plan: Plan, indices: list[int] | None) -> dict[str, list[int]]:
    """stage -> the indices whose furthest finished part is that stage's, from one listing per stage."""
    from .markers import stage_parts

    wanted = None if indices is None else set(indices)
    furthest: dict[int, str] = {}
    for stage in plan.stages:  # a later stage's part overrides an earlier one's
        for index in stage_parts(run, stage):
            if index < plan.num_parts and (wanted is None or index in wanted):
                furthest[index] = stage
    by_stage: dict[str, list[int]] = {}
    for index, stage in sorted(furthest.items()):
        by_stage.setdefault(stage, []).append(index)
    return by_stage


def _scan_one_by_one(run: RunDir, stage: str, indices: list[int]):
    import polars as pl

    return pl.concat([pl.scan_parquet(run.stage_part(stage, i)).with_columns(part=pl.lit(i, dtype=pl.Int64))
                      for i in indices], how="diagonal_relaxed")


def _scan_together(run: RunDir, stage: str, indices: list[int]):
    """One scan over a stage's parts (fast to plan at 10,000s of parts); the part index from the file name."""
    import polars as pl

    lazy = pl.scan_parquet([run.stage_part(stage, i) for i in indices], include_file_paths="_part_file",
                           missing_columns="insert", extra_columns="ignore")
    return lazy.with_columns(part=pl.col("_part_file").str.extract(r"part-(\d+)\.parquet$").cast(pl.Int64)) \
        .drop("_part_file")


def stage_scan(run: RunDir, plan: Plan, indices: list[int] | None = None, together: bool = False):
    """pl.LazyFrame of every clip of the given indices, from each index's furthest finished stage.

    `together`: one scan per stage, which takes the first part's schema (a part whose column types differ
    fails at collect: load_clips then falls back to a scan per part, as without it)."""
    import polars as pl

    by_stage = _furthest_parts(run, plan, indices)
    scan = _scan_together if together else _scan_one_by_one
    frames = [scan(run, stage, found) for stage, found in by_stage.items()]
    if not frames:
        return None
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def load_clips(run: RunDir, plan: Plan, columns) -> object | None:
    """The candidate clips (status ok, with a clip id) with just the columns `columns(schema)` picks."""
    for together in (True, False):
        lazy = stage_scan(run, plan, together=together)
        if lazy is None:
            return None
        try:
            wanted = columns(lazy.collect_schema())
            return candidates(lazy).select(wanted).collect()
        except Exception:
            if not together:
                raise
    return None


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
    curves: Path | None = None
    notes: dict = field(default_factory=dict)  # stage -> what it took out before the tables above (a line, figures)

    def summary(self) -> dict:
        return {"clips": self.clips, "html": str(self.html), "quantiles": self.quantiles.to_dicts(),
                "retention": self.retention.to_dicts(), "curves": str(self.curves) if self.curves else None,
                "charts": [str(p) for p in self.images], "notes": self.notes}


def cell(value) -> str:
    """One table cell as text, for the terminal table and the HTML report alike."""
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass
class Ordered:
    """One score's measured values in ascending order, with the row of each in the clips table: sorted once,
    then read for the quantiles, the histogram, the curve and the quantile thumbnails."""

    rows: object  # np.ndarray of row numbers
    values: object  # np.ndarray, ascending

    @classmethod
    def of(cls, clips, score: str) -> Ordered:
        import numpy as np

        column = clips.get_column(score).cast(float).to_numpy()
        measured = np.flatnonzero(~np.isnan(column))  # a null (not measured) reads as NaN here
        order = np.argsort(column[measured], kind="stable")
        return cls(measured[order], column[measured][order])

    def quantile(self, q: float) -> float | None:
        """Linear interpolation between the two nearest ranks (numpy's default, and polars' "linear")."""
        n = len(self.values)
        if not n:
            return None
        h = (n - 1) * q
        low = int(h)
        high = min(low + 1, n - 1)
        return float(self.values[low] + (h - low) * (self.values[high] - self.values[low]))


def quantile_table(clips, scores: list[str], quantiles: tuple[float, ...], limits: dict, ordered: dict | None = None):
    import polars as pl

    rows = []
    for score in scores:
        values = ordered[score] if ordered is not None else Ordered.of(clips, score)
        count = len(values.values)
        row = {"score": score, "count": count, "mean": float(values.values.mean()) if count else None}
        for q in quantiles:
            row[f"q{round(q * 100):02d}"] = values.quantile(q)
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


# -- curves and charts ---------------------------------------------------------------------------------
def kept_share(sorted_values, threshold: float, direction: str) -> float:
    """Share of clips a check would keep at `threshold`: at or above it for a minimum ("below": fails below
    it), at or below it for a maximum ("above"). Clips without the score are not in `sorted_values`."""
    import numpy as np

    n = len(sorted_values)
    if not n:
        return 1.0
    if direction == "below":
        return 1 - int(np.searchsorted(sorted_values, threshold, side="left")) / n
    return int(np.searchsorted(sorted_values, threshold, side="right")) / n


def curve_points(sorted_values, lo: float, hi: float, direction: str) -> list[tuple[float, float]]:
    import numpy as np

    grid = np.linspace(lo, hi, CURVE_POINTS)
    n = len(sorted_values)
    side = "left" if direction == "below" else "right"
    counts = np.searchsorted(sorted_values, grid, side=side)
    shares = 1 - counts / n if direction == "below" else counts / n
    return [(float(x), float(y)) for x, y in zip(grid, shares)]


@dataclass
class ScoreCharts:
    histogram: str  # SVG text
    curve: str
    curve_rows: list[dict]


def score_charts(score: str, values, checks: list) -> ScoreCharts:
    """The histogram (with the thresholds) and the kept-share curve of one score (`values` ascending, or
    any order: they are sorted when they are not)."""
    import numpy as np

    from .svgchart import Chart, value_range

    ordered = np.asarray(values, dtype=float)
    if len(ordered) > 1 and not bool(np.all(ordered[1:] >= ordered[:-1])):
        ordered = np.sort(ordered)
    limits = [c.limit for c in checks]
    lo, hi = value_range([float(ordered[0]), float(ordered[-1])], limits)
    bins = min(40, max(5, int(np.sqrt(len(ordered))) * 2))
    counts, edges = np.histogram(ordered, bins=bins, range=(lo, hi))
    marks = [(c.limit, f"{c.key} {c.limit:g}") for c in checks]
    hist = Chart(f"{score}: {len(ordered)} clips", score, "clips", (lo, hi), (0, max(1, int(counts.max()))),
                 bars=[(float(edges[i]), float(edges[i + 1]), float(counts[i])) for i in range(len(counts))],
                 marks=marks)
    directions = list(dict.fromkeys(c.fails_when for c in checks if c.fails_when)) or ["below"]
    lines, rows = [], []
    for direction in directions:
        points = curve_points(ordered, lo, hi, direction)
        label = "kept if it were the minimum" if direction == "below" else "kept if it were the maximum"
        lines.append((label, points))
        rows += [{"score": score, "direction": "min" if direction == "below" else "max", "threshold": x,
                  "kept_share": y} for x, y in points]
    curve_marks = [(c.limit, f"{c.key} {c.limit:g}: {kept_share(ordered, c.limit, c.fails_when or 'below'):.0%} kept")
                   for c in checks]
    curve = Chart(f"{score}: share of clips kept", f"threshold on {score}", "clips kept", (lo, hi), (0, 1),
                  lines=lines, marks=curve_marks, y_percent=True)
    return ScoreCharts(hist.svg(), curve.svg(), rows)


# -- thumbnails -------------------------------------------------------------------------------------
def _frame_at(path: str, at_s: float):
    """The first decodable frame at or after `at_s` (or the last one before the end), as an av.VideoFrame."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        container.seek(max(0, int(at_s / stream.time_base)), stream=stream, backward=True)  # keyframe before
        last = None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # a damaged packet: the next frame will do for a thumbnail
            for frame in frames:
                if frame.time is not None and frame.time >= at_s - 0.001:
                    return frame
                last = frame
        return last


def thumbnail_jpeg(path: str, at_s: float, width: int = THUMB_WIDTH) -> bytes | None:
    """The first frame at or after `at_s` of `path`, `width` px wide, as JPEG bytes (None when it cannot be
    read). Decoded in this process with PyAV (one seek), not an ffmpeg process per thumbnail."""
    from fractions import Fraction

    import av

    try:
        raw = _frame_at(path, at_s)
        if raw is None:
            return None
        height = max(2, round(raw.height * width / raw.width / 2) * 2)
        small = raw.reformat(width=width, height=height, format="yuvj420p")
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
        encoder.time_base = Fraction(1, 25)
        return b"".join(bytes(packet) for packet in [*encoder.encode(small), *encoder.encode(None)]) or None
    except Exception:  # a damaged or vanished file: the page says so instead of failing
        return None


class Thumbnails:
    """Each clip's thumbnail decoded once, however many scores show it."""

    def __init__(self, page: Path):
        self.page = page
        self.cache: dict[tuple, str | None] = {}

    def figure(self, row: dict, caption: str) -> str:
        start = float(row.get("start_s") or 0)
        duration = float(row.get("clip_duration_s") or 0)
        end = float(row.get("end_s") or start + duration)
        clip_file = row.get("clip_path")
        source = clip_file if clip_file and os.path.isfile(clip_file) else row.get("path")
        key = (source, start, duration)
        if key not in self.cache:
            at = duration / 2 if source == clip_file else start + duration / 2
            data = thumbnail_jpeg(source, at) if source and os.path.isfile(source) else None
            self.cache[key] = None if data is None else "data:image/jpeg;base64," + _b64(data)
        uri = self.cache[key]
        link = None
        if source:
            link = urllib.parse.quote(os.path.relpath(source, self.page.parent))
            if source != clip_file:
                link += f"#t={start:.2f},{end:.2f}"  # the clip's stretch of its video (media fragment)
        img = f"<img src='{uri}' alt='{html.escape(str(row.get('clip_id')))}'>" if uri else \
            "<span class='gone'>(no frame: file gone or unreadable)</span>"
        body = f"<a href='{link}'>{img}</a>" if link else img
        name = html.escape(str(row.get("relpath") or os.path.basename(str(source or ""))))
        return (f"<figure>{body}<figcaption><b>{name}</b><br>{start:.2f}-{end:.2f} s<br>{caption}"
                f"</figcaption></figure>")


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def nearest_clips(lazy_or_frame, column: str, limit: float, direction: str, k: int = THUMBS_PER_SIDE):
    """The k clips nearest to `limit` on each side of the check on `column`: (failing side, kept side).

    A minimum (direction "below") fails below the limit and keeps what is at or above it; a maximum
    fails above and keeps what is at or below."""
    import polars as pl

    col = pl.col(column)
    lazy = lazy_or_frame.lazy().filter(col.is_not_null() & ~col.is_nan())
    if direction == "below":
        under = lazy.filter(col < limit).top_k(k, by=column)
        over = lazy.filter(col >= limit).bottom_k(k, by=column)
    else:
        under = lazy.filter(col <= limit).top_k(k, by=column)
        over = lazy.filter(col > limit).bottom_k(k, by=column)
    under, over = pl.collect_all([under.sort(column, descending=True), over.sort(column)])
    return under.to_dicts(), over.to_dicts()


def quantile_clips(clips, ordered: Ordered, quantiles=THUMB_QUANTILES) -> list[tuple[float, dict]]:
    """(q, the clip at that quantile) for a score without a threshold."""
    n = len(ordered.rows)
    picked, seen = [], set()
    for q in quantiles if n else ():
        position = round(q * (n - 1))
        if position not in seen:
            seen.add(position)
            picked.append((q, clips.row(int(ordered.rows[position]), named=True)))
    return picked


# -- the page -------------------------------------------------------------------------------------
def _table_html(frame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = ""
    for row in frame.iter_rows():
        body += "<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def score_section(score: str, charts: ScoreCharts, checks: list, everything, clips, ordered: Ordered,
                  thumbs: Thumbnails) -> str:
    parts = [f"<h3 id='{html.escape(score)}'>{html.escape(score)}</h3><div class='charts'>{charts.histogram}"
             f"{charts.curve}</div>"]
    for check in checks:
        direction = check.fails_when or "below"
        below, above = nearest_clips(everything, score, check.limit, direction)
        fails = "below" if direction == "below" else "above"
        parts.append(f"<p>{html.escape(check.name)}: {html.escape(check.key or '')} {check.limit:g} (a clip fails "
                     f"{fails} it): the clips nearest to it on each side, over all {everything.height} clips</p>"
                     "<div class='row'>")
        for side, rows, verdict in (("just below", below, "fails" if direction == "below" else "kept"),
                                    ("just above", above, "kept" if direction == "below" else "fails")):
            parts.append(f"<div class='side'><b>{side}</b> ({verdict})<br>")
            parts += [thumbs.figure(row, f"{html.escape(score)} {row[score]:.4g}") for row in rows]
            if not rows:
                parts.append("<span class='gone'>(no clip on this side)</span>")
            parts.append("</div>")
        parts.append("</div>")
    if not checks:
        parts.append("<p>No threshold on this score: clips at its quantiles (lowest, quartiles, highest).</p>"
                     "<div class='row'>")
        parts += [thumbs.figure(row, f"q{round(q * 100):02d}: {html.escape(score)} {row[score]:.4g}")
                  for q, row in quantile_clips(clips, ordered)]
        parts.append("</div>")
    return "".join(parts)


def write_html(path: Path, run: RunDir, report_parts: dict) -> None:
    sections = [f"<h1>curate calibration</h1><p>{html.escape(str(run.root))}: {report_parts['clips']} clips"
                f"{report_parts['sampled']}</p>",
                "<h2>Quantiles</h2>", _table_html(report_parts["quantiles"]),
                "<h2>Retention</h2><p>Clips and hours that pass each check, and all of them together "
                "(a clip without the score passes, as at export).</p>", _table_html(report_parts["retention"]),
                "<h2>Scores</h2><p>Per score: the histogram of its values with each threshold on it, and the "
                "share of clips a threshold would keep as it moves, with the current one marked. Thumbnails "
                "link to the clip (its file, or its stretch of the video).</p>",
                "<p>" + " ".join(f"<a href='#{html.escape(s)}'>{html.escape(s)}</a>" for s in report_parts["sections"])
                + "</p>", *report_parts["sections"].values()]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:2px 8px;text-align:right}figure{display:inline-block;margin:4px;font-size:11px;"
             "vertical-align:top;max-width:170px}.side{display:inline-block;vertical-align:top;margin-right:2em}"
             ".gone{color:#999}.charts svg{margin-right:1em}")
    atomic_write_text(path, f"<!doctype html><html><head><meta charset='utf-8'><title>curate calibration</title>"
                            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")


def _needed_columns(config, schema) -> list[str]:
    from .decisions import run_checks

    scores = score_columns(config, dict(schema))
    for check in run_checks(config):
        scores += [c for c in check.columns if c in schema and c not in scores]
    return [c for c in (*CLIP_COLUMNS, "status") if c in schema] + [c for c in scores if c not in CLIP_COLUMNS]


def calibrate(run: RunDir, plan: Plan, sample_size: int | None = None,
              quantiles: tuple[float, ...] = DEFAULT_QUANTILES, config=None, console=None) -> CalibrationReport:
    """Write the calibration outputs of a run (config: the run's, or one with proposed thresholds)."""
    import polars as pl

    from .decisions import run_checks
    from .errors import CurateError

    config = config or plan.config
    everything = load_clips(run, plan, lambda schema: _needed_columns(config, schema))
    if everything is None:
        raise CurateError(f"{run.root}: no stage has finished an index yet; run some first "
                          "(curate local/submit --calibration --sample-size N)")
    total = everything.height
    clips, sampled = everything, ""
    if sample_size and total > sample_size:
        clips = everything.sample(sample_size, seed=0)
        sampled = f" (a random sample of {sample_size} of {total}; thumbnails near a threshold from all of them)"
    if clips.is_empty():
        raise CurateError(f"{run.root}: no clip with status ok in the finished indices; nothing to calibrate")
    checks = run_checks(config)
    limits = {c.columns[0]: c.limit for c in checks if c.limit is not None}
    scores = score_columns(config, dict(clips.schema))
    ordered = {score: Ordered.of(clips, score) for score in scores}
    table = quantile_table(clips, scores, quantiles, limits, ordered)
    retention = retention_table(clips, checks)
    out = run.metadata
    atomic_write_parquet(out / "calibration.parquet", table)
    atomic_write_parquet(out / "calibration_retention.parquet", retention)
    page = out / "calibration.html"
    thumbs = Thumbnails(page)
    sections, images, curve_rows = {}, [], []
    for score in scores:
        if not len(ordered[score].values):
            continue
        on_it = [c for c in checks if c.limit is not None and c.columns[0] == score]
        charts = score_charts(score, ordered[score].values, on_it)
        curve_rows += charts.curve_rows
        chart_file = out / "calibration" / f"{score}.svg"
        atomic_write_text(chart_file, _stack(charts))
        images.append(chart_file)
        sections[score] = score_section(score, charts, on_it, everything, clips, ordered[score], thumbs)
    curves = out / "calibration_curves.parquet"
    atomic_write_parquet(curves, pl.DataFrame(curve_rows, schema={"score": pl.Utf8, "direction": pl.Utf8,
                                                                  "threshold": pl.Float64, "kept_share": pl.Float64}))
    write_html(page, run, {"clips": clips.height, "sampled": sampled, "quantiles": table, "retention": retention,
                           "sections": sections})
    report = CalibrationReport(clips.height, table, retention, page, images, curves,
                               notes=stage_notes(run, plan, config))
    if console is not None:
        show(report, console)
    return report


def _stack(charts: ScoreCharts) -> str:
    """Both charts of a score as one standalone SVG file, one above the other."""
    from .svgchart import HEIGHT, WIDTH

    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{2 * HEIGHT}'>"
            f"<g>{charts.histogram}</g><g transform='translate(0,{HEIGHT})'>{charts.curve}</g></svg>\n")


def stage_notes(run: RunDir, plan: Plan, config) -> dict:
    """What stages say about the clips they took out before the thresholds (e.g. dedup's duplicates)."""
    from stages import STAGES

    notes = {}
    for together in (True, False):  # one scan per stage, else per part (as load_clips)
        lazy = stage_scan(run, plan, together=together)
        if lazy is None:
            return notes
        try:
            for name in plan.stages:
                note = STAGES[name].load().calibration_note(lazy, config.stage_section(name))
                if note:
                    notes[name] = note
            return notes
        except Exception:
            if not together:
                raise
    return notes


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
    from rich import box
    from rich.table import Table

    for title, frame in (("score quantiles", report.quantiles), ("retention", report.retention)):
        table = Table(title=f"{title} ({report.clips} clips)", box=box.SIMPLE_HEAD)
        for column in frame.columns:
            numeric = frame[column].dtype.is_numeric()
            table.add_column(column, justify="right" if numeric else "left", no_wrap=not numeric)
        for row in frame.iter_rows():
            table.add_row(*(cell(v) for v in row))
        console.print(table)
    for note in report.notes.values():
        console.print(note["line"])
    console.print(f"report: {report.html} (charts in {report.html.parent / 'calibration'}, kept-share curves in "
                  f"{report.curves})")
