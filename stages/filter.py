"""filter: score every kept clip with the CPU analyzers, decoding each video at most once.

Split's decode already recorded what flash, motion, OCR and NSFW read (stages/handoff.py), so most
clips need no decode here; the clips without a record are decoded in a single pass of the decode
loop over the clips of a video (seeking over long gaps). Scores are stored; keep/drop is decided at export from the thresholds
(curate.decisions), so a new threshold re-runs nothing. With `cascade: true` the expensive
analyzers (OCR, NSFW) only run on clips that the cheap checks kept, and a skipped clip records
which check spared the work.
"""

from __future__ import annotations

from curate.decisions import first_failure
from curate.sections import Decision, StageSection, subsections

from .analyzers import all_columns, analyzer_classes, build_analyzers
from .base import Stage, by_video
from .decode import scan_clips
from .schema import frame

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


class FilterStage(Stage):
    name = "filter"

    @classmethod
    def threshold_checks(cls, cfg) -> list:
        return basic_checks(cfg) + [c for a in build_analyzers(cfg) for c in a.threshold_checks()]

    def preflight(self) -> None:
        self.analyzers = build_analyzers(self.cfg)
        for analyzer in self.analyzers:
            analyzer.preflight()

    def run(self, rows):
        from .handoff import Handoff

        handoff = Handoff.read(self.ctx.run.handoff_part(self.ctx.index), self.ctx.plan.config, self.analyzers)
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
        records = {clip["clip_id"]: {a.name: handoff.get(a, clip["clip_id"]) for a in self.analyzers} for clip in todo}
        recorded = [clip["clip_id"] for clip in todo if None not in records[clip["clip_id"]].values()]
        self.ctx.log(f"filter[{self.ctx.index}] {len(recorded)} of {len(todo)} clips from split's records")
        results.update(finish_recorded(self.analyzers, self.cfg, {cid: records[cid] for cid in recorded}))
        videos = by_video([clip for clip in todo if clip["clip_id"] not in results])
        for n, (path, clips) in enumerate(videos.items(), 1):
            self.ctx.log(f"filter[{self.ctx.index}] decoding {n}/{len(videos)} {clips[0]['relpath']}: {len(clips)} clips")
            results.update(analyze_video(path, clips, self.analyzers, self.cfg, records, self.ctx.stats))
        out = [{**row, **results.get(row["clip_id"], {})} for row in clips_ok]
        self.ctx.stats["clips_scored"] = len(results)
        self.ctx.stats["clips_from_split"] = len(recorded)
        return frame(passthrough + out, {**dict(rows.schema), **all_columns(), "skipped_by": "Utf8"})


def cascade(analyzers: list, cfg, clip_ids: list[str], columns_of) -> dict[str, dict]:
    """The clips' columns, analyzer by analyzer, cheapest first (`columns_of(analyzer, clip_ids)`
    gives them); with `cascade: true` a clip a cheaper check rejected skips the expensive ones and
    records which check spared the work. Clips that fail duration/resolution never get here."""
    out: dict[str, dict] = {clip_id: {} for clip_id in clip_ids}
    reasons: dict[str, str] = {}
    for analyzer in analyzers:
        todo = []
        for clip_id in clip_ids:
            if cfg.cascade and clip_id in reasons and analyzer.cost >= EXPENSIVE_COST:
                out[clip_id].setdefault("skipped_by", reasons[clip_id].split(":")[0])
            else:
                todo.append(clip_id)
        for clip_id, columns in zip(todo, columns_of(analyzer, todo) if todo else []):
            out[clip_id].update(columns)
            if cfg.cascade and clip_id not in reasons and (reason := first_failure(analyzer.threshold_checks(), columns)):
                reasons[clip_id] = reason
    return out


def finish_recorded(analyzers: list, cfg, records: dict[str, dict]) -> dict[str, dict]:
    """Columns of the clips split recorded everything for, each analyzer over all of them at once
    (models batch across clips)."""
    return cascade(analyzers, cfg, list(records),
                   lambda analyzer, clip_ids: analyzer.from_records([records[c][analyzer.name] for c in clip_ids]))


def analyze_video(path: str, clips: list[dict], analyzers: list, cfg, records: dict[str, dict],
                  stats: dict | None = None) -> dict[str, dict]:
    """The filter columns of one video's clips from one decode of them (each analyzer that has a
    record of a clip uses it instead)."""
    results: dict[str, dict] = {}
    # Only the analyzers some of these clips have no record for are fed.
    consumers = [a for a in analyzers if any(records[c["clip_id"]][a.name] is None for c in clips)]
    if stats is not None:  # which analyzers needed a decode, and for how many clips
        for analyzer in consumers:
            stats.setdefault("decoded_for", {}).setdefault(analyzer.name, 0)
            stats["decoded_for"][analyzer.name] += len(clips)
    try:
        for scan in scan_clips(path, clips, consumers):
            clip_id = scan.clip["clip_id"]
            if scan.frames:
                # from the clip's record where it has one, else from what the decode fed the analyzer
                def decoded(analyzer, _ids, _records=records[clip_id]):
                    record = _records[analyzer.name]
                    return analyzer.from_records([record]) if record is not None else [analyzer.end()]

                results.update(cascade(analyzers, cfg, [clip_id], decoded))
            else:
                results[clip_id] = {"status": "failed", "reason": "filter: no frame decoded in the clip's range"}
    except Exception as exc:  # a decode error fails the clips not yet scored, not the task
        for clip in clips:
            results.setdefault(clip["clip_id"], {"status": "failed",
                                                 "reason": f"filter decode failed: {type(exc).__name__}: {exc}"})
    return results
