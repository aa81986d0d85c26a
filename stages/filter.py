"""filter: score every kept clip with the CPU analyzers, decoding each video once.

All analyzers are fed from a single PyAV pass over the clips of a video (seeking over long
gaps). Scores are stored; keep/drop is decided at export from the thresholds
(curate.decisions), so a new threshold re-runs nothing. With `cascade: true` the expensive
analyzers (OCR, NSFW) only run on clips that the cheap checks kept, and a skipped clip records
which check spared the work.
"""

from __future__ import annotations

from collections import defaultdict

import polars as pl

from curate.decisions import basic_rejects

from .analyzers import all_columns, build_analyzers
from .base import Stage
from .decode import Sampler, iter_frames

EXPENSIVE_COST = 10
EPS = 1e-6


class FilterStage(Stage):
    name = "filter"

    def check(self) -> None:
        self.analyzers = build_analyzers(self.cfg)
        for analyzer in self.analyzers:
            analyzer.check()

    def run(self, rows):
        by_video: dict[str, list[dict]] = defaultdict(list)
        passthrough = []
        for row in rows.iter_rows(named=True):
            if row["status"] == "ok" and row["clip_id"]:
                by_video[row["path"]].append(row)
            else:
                passthrough.append(row)
        results: dict[str, dict] = {}
        for n, (path, clips) in enumerate(by_video.items(), 1):
            self.ctx.log(f"filter[{self.ctx.index}] {n}/{len(by_video)} {clips[0]['relpath']}: {len(clips)} clips")
            results.update(self._video(path, sorted(clips, key=lambda c: c["start_s"])))
        out = [{**row, **results.get(row["clip_id"], {})} for clips in by_video.values() for row in clips]
        schema = {**dict(rows.schema), **all_columns(), "skipped_by": pl.Utf8}
        frame = pl.DataFrame([{k: r.get(k) for k in schema} for r in passthrough + out], schema=schema)
        self.ctx.stats["clips_scored"] = len(results)
        return frame

    def _video(self, path: str, clips: list[dict]) -> dict[str, dict]:
        results: dict[str, dict] = {}
        todo = []
        for clip in clips:
            early = basic_rejects(clip, self.cfg) if self.cfg.cascade else None
            if early:  # no decode at all for a clip that fails duration or resolution
                results[clip["clip_id"]] = {"skipped_by": early.split(":")[0]}
            else:
                todo.append(clip)
        if not todo:
            return results
        samplers = [Sampler(a.need) for a in self.analyzers]
        current = -1
        try:
            for frame in iter_frames(path, [(c["start_s"], c["end_s"]) for c in todo]):
                while current + 1 < len(todo) and frame.time >= todo[current + 1]["start_s"] - EPS:
                    if current >= 0:
                        results[todo[current]["clip_id"]] = self._finish(todo[current])
                    current += 1
                    for analyzer, sampler in zip(self.analyzers, samplers):
                        analyzer.begin(todo[current])
                        sampler.reset()
                if current < 0 or frame.time >= todo[current]["end_s"] - EPS:
                    continue
                for analyzer, sampler in zip(self.analyzers, samplers):
                    if sampler.wants(frame):
                        analyzer.feed(frame)
            if current >= 0:
                results[todo[current]["clip_id"]] = self._finish(todo[current])
        except Exception as exc:  # a decode error fails the clips not yet scored, not the task
            for clip in todo:
                results.setdefault(clip["clip_id"], {"status": "failed",
                                                     "reason": f"filter decode failed: {type(exc).__name__}: {exc}"})
        for clip in todo:  # clips whose time range held no decodable frame
            if clip["clip_id"] not in results:
                results[clip["clip_id"]] = {"status": "failed", "reason": "filter: no frame decoded in the clip's range"}
        return results

    def _finish(self, clip: dict) -> dict:
        out: dict = {}
        reason = None  # clips that fail duration/resolution under the cascade never get here
        for analyzer in self.analyzers:
            if self.cfg.cascade and reason and analyzer.cost >= EXPENSIVE_COST:
                out.setdefault("skipped_by", reason.split(":")[0])
                continue
            result = analyzer.end()
            out.update(result)
            if self.cfg.cascade and reason is None:
                reason = analyzer.rejects(result)
        return out
