"""filter: score every kept clip with the CPU analyzers, decoding each video once.

All analyzers are fed from a single pass of the decode loop over the clips of a video (seeking
over long gaps). Scores are stored; keep/drop is decided at export from the thresholds
(curate.decisions), so a new threshold re-runs nothing. With `cascade: true` the expensive
analyzers (OCR, NSFW) only run on clips that the cheap checks kept, and a skipped clip records
which check spared the work.
"""

from __future__ import annotations

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
    def checks(cls, cfg) -> list:
        return basic_checks(cfg) + [c for a in build_analyzers(cfg) for c in a.checks()]

    def check(self) -> None:
        self.analyzers = build_analyzers(self.cfg)
        for analyzer in self.analyzers:
            analyzer.check()

    def run(self, rows):
        passthrough, clips_ok = [], []
        for row in rows.iter_rows(named=True):
            (clips_ok if row["status"] == "ok" and row["clip_id"] else passthrough).append(row)
        videos = by_video(clips_ok)
        results: dict[str, dict] = {}
        for n, (path, clips) in enumerate(videos.items(), 1):
            self.ctx.log(f"filter[{self.ctx.index}] {n}/{len(videos)} {clips[0]['relpath']}: {len(clips)} clips")
            results.update(self._video(path, clips))
        out = [{**row, **results.get(row["clip_id"], {})} for clips in videos.values() for row in clips]
        self.ctx.stats["clips_scored"] = len(results)
        return frame(passthrough + out, {**dict(rows.schema), **all_columns(), "skipped_by": "Utf8"})

    def _video(self, path: str, clips: list[dict]) -> dict[str, dict]:
        from curate.decisions import first_failure

        results: dict[str, dict] = {}
        todo = []
        early_checks = basic_checks(self.cfg) if self.cfg.cascade else []
        for clip in clips:
            early = first_failure(early_checks, clip) if early_checks else None
            if early:  # no decode at all for a clip that fails duration or resolution
                results[clip["clip_id"]] = {"skipped_by": early.split(":")[0]}
            else:
                todo.append(clip)
        if not todo:
            return results
        try:
            for scan in scan_clips(path, todo, self.analyzers):
                if scan.frames:
                    results[scan.clip["clip_id"]] = self._finish()
                else:
                    results[scan.clip["clip_id"]] = {"status": "failed",
                                                     "reason": "filter: no frame decoded in the clip's range"}
        except Exception as exc:  # a decode error fails the clips not yet scored, not the task
            for clip in todo:
                results.setdefault(clip["clip_id"], {"status": "failed",
                                                     "reason": f"filter decode failed: {type(exc).__name__}: {exc}"})
        return results

    def _finish(self) -> dict:
        from curate.decisions import first_failure

        out: dict = {}
        reason = None  # clips that fail duration/resolution under the cascade never get here
        for analyzer in self.analyzers:
            if self.cfg.cascade and reason and analyzer.cost >= EXPENSIVE_COST:
                out.setdefault("skipped_by", reason.split(":")[0])
                continue
            result = analyzer.end()
            out.update(result)
            if self.cfg.cascade and reason is None:
                reason = first_failure(analyzer.checks(), result)
        return out
