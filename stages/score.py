"""score: quality, aesthetics and classifier scores per clip, on CPU or GPU.

It scores the clips that the earlier stages' thresholds keep (`only_kept`; those thresholds then
belong to its fingerprint), stores every score, and leaves keep/drop to export (`min`/`max` per
scorer). Its policy over the measuring engine (stages/measure.py): the engine runs in a producer
thread (split's records, decoded into model inputs, or one decode per video preprocessed on the
CPU) into a bounded queue of clips, so the GPU never waits on a decode and memory stays bounded by
`queue_clips` and the batch sizes. The consumer batches each scorer's inputs across clips
(`batch_size`) and runs up to `workers` scorers at once (scorers on different GPUs in parallel).
Each model is loaded once per task process, before any work.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

from pydantic import Field

from curate.sections import Runtime, StageSection, subsections

from .base import by_video, earlier_decisions, target_clips
from .handoff import part_path
from .measure import ClipMeasurer, MeasuringStage
from .scorers import build_scorers, scorer_classes
from .scorers.classifier import ClassifierConfig

PUT_WAIT_S = 0.5


class ScoreBase(StageSection):
    only_kept: bool = True
    workers: int = Runtime(1, ge=1)
    decode_threads: int = Runtime(0, ge=0)
    decode_workers: int = Runtime(1, ge=1)  # processes decoding and preprocessing for the model side
    queue_clips: int = Runtime(8, ge=1)
    classifiers: list[ClassifierConfig] = Field(default_factory=list)


# score: its own keys plus one sub-section per registered scorer (stages/scorers/__init__.py).
ScoreConfig = subsections("ScoreConfig", ScoreBase, {name: cls.Config for name, cls in scorer_classes().items()})


class Batcher:
    """Gathers one scorer's records across clips and measures whole batches."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.pending: list[tuple[str, object]] = []
        self.seconds = 0.0

    def add(self, clip_id: str, record) -> list[tuple[str, dict]]:
        self.pending.append((clip_id, record))
        if sum(len(r.items) for _, r in self.pending) >= self.scorer.batch_size:
            return self.flush()
        return []

    def flush(self) -> list[tuple[str, dict]]:
        started = time.perf_counter()
        done = list(zip([clip_id for clip_id, _ in self.pending],
                        self.scorer.measure([record for _, record in self.pending])))
        self.pending = []
        self.seconds += time.perf_counter() - started
        return done


class ScoreStage(MeasuringStage):
    name = "score"
    warm_modules = ("numpy", "cv2", "av")
    cpus, mem = 4, "16G"
    consumers = staticmethod(build_scorers)

    @classmethod
    def threshold_checks(cls, cfg) -> list:
        return [c for s in build_scorers(cfg) for c in s.threshold_checks()]

    @classmethod
    def fingerprint_inputs(cls, config) -> dict:
        """With only_kept, which clips get scored follows the thresholds of the stages before."""
        return earlier_decisions(config, cls.name) if config.score.only_kept else {}

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        columns: dict[str, str] = {}
        for scorer in build_scorers(cfg):
            columns.update(scorer.columns)
        return columns

    def run(self, rows):
        from .schema import frame

        targets = target_clips(rows, self.ctx.plan.config, self.name, self.cfg.only_kept) if self.measuring else []
        results = self._score(targets) if targets else {}
        out = [{**row, **results.get(row.get("clip_id"), {})} for row in rows.to_dicts()]
        self.ctx.stats["clips_scored"] = sum(1 for r in results.values() if r.get("status") != "failed")
        return frame(out, {**dict(rows.schema), **self.columns(self.cfg)})

    @classmethod
    def resources(cls, cfg):
        """A core per decode worker next to the one that feeds the model(s)."""
        from dataclasses import replace

        declared = super().resources(cfg)
        return replace(declared, cpus=max(declared.cpus, cfg.decode_workers + 1))

    def _measured(self, clips: list[dict]) -> Iterator:
        """The clips' model inputs: from a producer thread, or from `decode_workers` processes."""
        ctx = self.ctx
        if self.cfg.decode_workers > 1 and len(by_video(clips)) > 1:
            from .score_workers import measured_in_workers

            handoff = part_path(ctx.run, ctx.index)
            ctx.stats["decode_workers"] = self.cfg.decode_workers
            return measured_in_workers(ctx.plan.config.to_plain(), str(handoff) if handoff.is_file() else None,
                                       self.name, clips, self.cfg.decode_workers, self.cfg.queue_clips,
                                       self.cfg.decode_threads, ctx.stats, ctx.log)
        measurer = ClipMeasurer.for_task(ctx, self.measuring, decode_threads=self.cfg.decode_threads, unpack=True)
        return produced(measurer.clips(clips), self.cfg.queue_clips)

    def _score(self, clips: list[dict]) -> dict[str, dict]:
        results: dict[str, dict] = defaultdict(dict)
        batchers = [Batcher(s) for s in self.measuring]
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
            for m in self._measured(clips):
                if m.failure is not None:
                    results[m.clip["clip_id"]] = {"status": "failed", "reason": m.failure}
                    continue
                each(lambda b, _m=m: b.add(_m.clip["clip_id"], _m.records[b.scorer.key]))
            each(lambda b: b.flush())
        finally:
            if pool:
                pool.shutdown(wait=True)
        self.ctx.stats["infer_s"] = {b.scorer.main: round(b.seconds, 3) for b in batchers}
        return results


def produced(items: Iterator, maxsize: int) -> Iterator:
    """`items`, computed ahead in a producer thread into a bounded queue (decoding and
    preprocessing overlap inference); a crash in the producer is raised here, in the task."""
    buffer: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    crashed: list[BaseException] = []
    end = object()

    def put(item) -> None:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=PUT_WAIT_S)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                put(item)
        except BaseException as exc:
            crashed.append(exc)
        finally:
            put(end)

    producer = threading.Thread(target=produce, name="curate-score-decode", daemon=True)
    producer.start()
    try:
        while (item := buffer.get()) is not end:
            yield item
        if crashed:
            raise crashed[0]
    finally:
        stop.set()
        producer.join(timeout=10)
