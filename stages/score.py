"""score: quality, aesthetics and classifier scores per clip, on CPU or GPU.

It scores the clips that the earlier stages' thresholds keep (`only_kept`; those thresholds then
belong to its fingerprint), stores every score, and leaves keep/drop to export (`min`/`max` per
scorer). Scorers whose inputs split's decode recorded (quality) read them from its handoff (stages/handoff.py);
the others get one decode per video, in a producer thread: the decode loop feeds each scorer its frames, which
it preprocesses on the CPU (`feed`/`collected`) into a bounded queue of clips, so the GPU never waits on a
decode and memory stays bounded by `queue_clips` and the batch sizes. The consumer batches each
scorer's frames across clips (`batch_size`) and runs up to `workers` scorers at once (scorers on
different GPUs in parallel). Each model is loaded once per task process, before any work.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict

from pydantic import Field

from curate.sections import Runtime, StageSection, subsections

from .base import Stage, by_video, earlier_decisions, target_clips
from .decode import scan_clips
from .scorers import build_scorers, scorer_classes
from .scorers.classifier import ClassifierConfig

PUT_WAIT_S = 0.5


class ScoreBase(StageSection):
    only_kept: bool = True
    workers: int = Runtime(1, ge=1)
    decode_threads: int = Runtime(0, ge=0)
    queue_clips: int = Runtime(8, ge=1)
    classifiers: list[ClassifierConfig] = Field(default_factory=list)


# score: its own keys plus one sub-section per registered scorer (stages/scorers/__init__.py).
ScoreConfig = subsections("ScoreConfig", ScoreBase, {name: cls.Config for name, cls in scorer_classes().items()})


class Batcher:
    """Gathers one scorer's inputs across clips and infers whole batches."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.pending: list[tuple[str, list]] = []
        self.seconds = 0.0

    def add(self, clip_id: str, items: list) -> list[tuple[str, dict]]:
        self.pending.append((clip_id, items))
        if sum(len(i) for _, i in self.pending) >= self.scorer.batch_size:
            return self.flush()
        return []

    def flush(self) -> list[tuple[str, dict]]:
        started = time.perf_counter()
        outputs = self.scorer.infer_all([item for _, items in self.pending for item in items])
        done, at = [], 0
        for clip_id, items in self.pending:
            done.append((clip_id, self.scorer.summarize(outputs[at:at + len(items)])))
            at += len(items)
        self.pending = []
        self.seconds += time.perf_counter() - started
        return done


class ScoreStage(Stage):
    name = "score"

    @classmethod
    def threshold_checks(cls, cfg) -> list:
        return [c for s in build_scorers(cfg) for c in s.threshold_checks()]

    @classmethod
    def fingerprint_inputs(cls, config) -> dict:
        """With only_kept, which clips get scored follows the thresholds of the stages before."""
        return earlier_decisions(config, cls.name) if config.score.only_kept else {}

    def preflight(self) -> None:
        self.scorers = build_scorers(self.cfg)
        for scorer in self.scorers:
            scorer.preflight()

    def run(self, rows):
        from .schema import frame

        targets = target_clips(rows, self.ctx.plan.config, self.name, self.cfg.only_kept) if self.scorers else []
        results = self._score(targets)
        columns = {}
        for scorer in self.scorers:
            columns.update(scorer.columns)
        out = [{**row, **results.get(row.get("clip_id"), {})} for row in rows.to_dicts()]
        self.ctx.stats["clips_scored"] = sum(1 for r in results.values() if r.get("status") != "failed")
        return frame(out, {**dict(rows.schema), **columns})

    def _score(self, clips: list[dict]) -> dict[str, dict]:
        from .handoff import Handoff

        recorded = Handoff.read(self.ctx.run.handoff_part(self.ctx.index), self.ctx.plan.config, self.scorers)
        videos = by_video(clips)
        results: dict[str, dict] = defaultdict(dict)
        if not clips:
            return results
        handoff: queue.Queue = queue.Queue(maxsize=self.cfg.queue_clips)
        stop = threading.Event()
        decode_s = [0.0]
        crashed: list[BaseException] = []  # a bug in the producer fails the task instead of scoring nothing

        def put(item) -> None:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=PUT_WAIT_S)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                for n, (path, video_clips) in enumerate(videos.items(), 1):
                    self.ctx.log(f"score[{self.ctx.index}] {n}/{len(videos)} {video_clips[0]['relpath']}: "
                                 f"{len(video_clips)} clips")
                    records = {c["clip_id"]: [recorded.get(s, c["clip_id"]) for s in self.scorers] for c in video_clips}
                    live = [c for c in video_clips if None in records[c["clip_id"]]]
                    fed = [s for i, s in enumerate(self.scorers) if any(records[c["clip_id"]][i] is None for c in live)]
                    for clip in video_clips:  # split recorded every scorer's inputs: no decode
                        if None not in records[clip["clip_id"]]:
                            put(("clip", clip["clip_id"], 1, [s.unpack_all(r.items) for s, r in
                                                               zip(self.scorers, records[clip["clip_id"]])]))
                    sent: set[str] = set()
                    started = time.perf_counter()
                    try:
                        for scan in scan_clips(path, live, fed, self.cfg.decode_threads) if live else ():
                            decode_s[0] += time.perf_counter() - started
                            items = [s.collected() if r is None else s.unpack_all(r.items)
                                     for s, r in zip(self.scorers, records[scan.clip["clip_id"]])]
                            put(("clip", scan.clip["clip_id"], scan.frames, items))
                            sent.add(scan.clip["clip_id"])
                            started = time.perf_counter()
                    except Exception as exc:  # a broken file fails its unscored clips, not the task
                        for clip in live:
                            if clip["clip_id"] not in sent:
                                put(("failed", clip["clip_id"], f"score decode failed: {type(exc).__name__}: {exc}"))
            except BaseException as exc:
                crashed.append(exc)
            finally:
                put(None)

        producer = threading.Thread(target=produce, name="curate-score-decode", daemon=True)
        producer.start()
        batchers = [Batcher(s) for s in self.scorers]
        pool = None
        if self.cfg.workers > 1 and len(batchers) > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=self.cfg.workers, thread_name_prefix="curate-score")

        def each(call) -> None:
            """Run `call(batcher)` for every scorer, in parallel with workers > 1, and store the results."""
            outcomes = list(pool.map(call, batchers)) if pool else [call(b) for b in batchers]
            for done in outcomes:
                for clip_id, columns in done:
                    results[clip_id].update(columns)

        try:
            while (item := handoff.get()) is not None:
                if item[0] == "failed":
                    results[item[1]] = {"status": "failed", "reason": item[2]}
                    continue
                _, clip_id, frames, items = item
                if not frames:
                    results[clip_id] = {"status": "failed", "reason": "score: no frame decoded in the clip's range"}
                    continue
                each(lambda b, _items=dict(zip(batchers, items)), _id=clip_id: b.add(_id, _items[b]))
            if crashed:
                raise crashed[0]
            each(lambda b: b.flush())
        finally:
            stop.set()
            if pool:
                pool.shutdown(wait=True)
            producer.join(timeout=10)
        self.ctx.stats["decode_s"] = round(decode_s[0], 3)
        self.ctx.stats["infer_s"] = {b.scorer.main: round(b.seconds, 3) for b in batchers}
        return results
