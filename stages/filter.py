"""filter: score every kept clip with the CPU analyzers, decoding each video at most once.

Split's decode already recorded what flash, motion, OCR and NSFW read (stages/handoff.py), so most
clips need no decode here; the measuring engine (stages/measure.py) decodes the clips without a
record in one pass per video. Scores are stored; keep/drop is decided at export from the
thresholds (curate.decisions), so a new threshold re-runs nothing. With `cascade: true` the
expensive analyzers (OCR, NSFW) only run on clips that the cheap checks kept, and a skipped clip
records which check spared the work.
"""

from __future__ import annotations

from curate.decisions import first_failure
from curate.sections import Decision, StageSection, subsections

from .analyzers import analyzer_classes, build_analyzers
from .measure import ClipMeasurer, MeasuringStage, chunks

EXPENSIVE_COST = 10


class FilterBase(StageSection):
    cascade: bool = False
    min_duration_s: float | None = Decision(None, ge=0)
    max_duration_s: float | None = Decision(None, gt=0)
    min_short_side: int | None = Decision(None, ge=1)


# filter: its own keys plus one sub-section per registered analyzer (stages/analyzers/__init__.py).
FilterConfig = subsections("FilterConfig", FilterBase,
                           {name: cls.Config for name, cls in analyzer_classes().items()})


def basic_checks(cfg) -> list:
    """Checks that need no decode: duration and resolution."""
    import polars as pl

    from curate.decisions import Check, above, below

    found = []
    if cfg.min_duration_s is not None:
        found.append(below("duration", "clip_duration_s", cfg.min_duration_s, "min_duration_s", digits=2))
    if cfg.max_duration_s is not None:
        found.append(above("duration", "clip_duration_s", cfg.max_duration_s, "max_duration_s", digits=2))
    if cfg.min_short_side is not None:
        short = pl.min_horizontal(pl.col("width").fill_null(0), pl.col("height").fill_null(0))
        found.append(Check("resolution", ("width", "height"), short < cfg.min_short_side,
                           pl.format(f"resolution: short side {{}} px < min_short_side {cfg.min_short_side}", short)))
    return found


class FilterStage(MeasuringStage):
    name = "filter"
    warm_modules = ("numpy", "cv2", "av", "onnxruntime", "openvino", "rapidocr_onnxruntime", "nudenet")
    cpus, mem = 2, "8G"
    consumers = staticmethod(build_analyzers)

    @classmethod
    def threshold_checks(cls, cfg) -> list:
        return basic_checks(cfg) + [c for a in build_analyzers(cfg) for c in a.threshold_checks()]

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        columns = {}  # every analyzer's, enabled or not: parts of one run share one schema
        for analyzer in build_analyzers(cfg, enabled_only=False):
            columns.update(analyzer.columns)
        return {**columns, "skipped_by": "Utf8"}

    def run(self, rows):
        from .schema import frame

        passthrough, clips_ok = [], []
        for row in rows.iter_rows(named=True):
            (clips_ok if row["status"] == "ok" and row["clip_id"] else passthrough).append(row)
        results: dict[str, dict] = {}
        todo = []
        early_checks = basic_checks(self.cfg) if self.cfg.cascade else []
        for clip in clips_ok:
            early = first_failure(early_checks, clip) if early_checks else None
            if early:  # no work at all for a clip that fails duration or resolution
                results[clip["clip_id"]] = {"skipped_by": early.split(":")[0]}
            else:
                todo.append(clip)
        results.update(filter_columns(self.measuring, self.cfg, ClipMeasurer.for_task(self.ctx, self.measuring), todo))
        out = [{**row, **results.get(row["clip_id"], {})} for row in clips_ok]
        self.ctx.stats["clips_scored"] = len(results)
        return frame(passthrough + out, {**dict(rows.schema), **self.columns(self.cfg)})


def filter_columns(analyzers: list, cfg, measurer, clips: list[dict]) -> dict[str, dict]:
    """Each clip's filter columns (or its failure), the cascade run over chunks of measured clips."""
    results: dict[str, dict] = {}
    for chunk in chunks(measurer.clips(clips)):
        for m in chunk:
            if m.failure is not None:
                results[m.clip["clip_id"]] = {"status": "failed", "reason": m.failure}
        results.update(cascade(analyzers, cfg, {m.clip["clip_id"]: m.records for m in chunk if m.failure is None}))
    return results


def cascade(analyzers: list, cfg, records: dict[str, dict]) -> dict[str, dict]:
    """The clips' columns from their records (clip id -> consumer key -> Record), analyzer by
    analyzer, cheapest first, each over all the clips at once (models batch across clips). With
    `cascade: true` a clip a cheaper check rejected skips the expensive ones and records which
    check spared the work. Clips that fail duration/resolution never get here."""
    out: dict[str, dict] = {clip_id: {} for clip_id in records}
    reasons: dict[str, str] = {}
    for analyzer in analyzers:
        todo = []
        for clip_id in records:
            if cfg.cascade and clip_id in reasons and analyzer.cost >= EXPENSIVE_COST:
                out[clip_id].setdefault("skipped_by", reasons[clip_id].split(":")[0])
            else:
                todo.append(clip_id)
        measured = analyzer.measure([records[c][analyzer.key] for c in todo]) if todo else []
        checks = analyzer.threshold_checks() if cfg.cascade else []
        for clip_id, columns in zip(todo, measured):
            out[clip_id].update(columns)
            if checks and clip_id not in reasons and (reason := first_failure(checks, columns)):
                reasons[clip_id] = reason
    return out
