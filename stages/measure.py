"""The one clip-measuring engine of the filter and score stages.

For each clip it finds every consumer's `Record`: split's record while its settings still match
(stages/handoff.py), else one decode per video, feeding only the consumers some of its clips have
no record for. A decode error fails the clips it cost and a clip with no decodable frame fails
alone; the task goes on. What a stage does with the records is its policy: filter's cascade
(`cascade`, in chunks of clips) and score's producer thread with batches across clips
(stages/score.py) both read `ClipMeasurer.clips`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .base import Stage, by_video
from .decode import scan_clips
from .handoff import Handoff, Record, part_path

CHUNK_CLIPS = 64  # filter's cascade runs over this many clips at once ...
CHUNK_ITEMS = 192  # ... or fewer, once their live model inputs (decoded images) reach this many


@dataclass
class Measured:
    """One clip with each consumer's Record (by consumer key), or why it cannot be measured."""

    clip: dict
    records: dict[str, Record] | None
    failure: str | None = None


class ClipMeasurer:
    """Records first, decode only what has none. `unpack` decodes recorded inputs as they are read
    (score: in its producer thread, so the model side gets ready inputs)."""

    def __init__(self, consumers: list, handoff: Handoff | None = None, stage: str = "measure",
                 log: Callable[[str], None] | None = None, stats: dict | None = None, decode_threads: int = 0,
                 unpack: bool = False, label: str | None = None):
        self.consumers, self.handoff, self.stage = consumers, handoff or Handoff({}), stage
        self.label = label or stage  # how log lines name the task
        self.log = log or (lambda message: None)
        self.stats = stats if stats is not None else {}
        self.decode_threads, self.unpack = decode_threads, unpack
        self.decode_s = 0.0

    @classmethod
    def for_task(cls, ctx, consumers: list, **kw) -> ClipMeasurer:
        """The engine of one task: split's records of its index, its log and its marker's stats."""
        handoff = Handoff.read(part_path(ctx.run, ctx.index), ctx.plan.config, consumers)
        return cls(consumers, handoff, ctx.stage, ctx.log, ctx.stats, label=f"{ctx.stage}[{ctx.index}]", **kw)

    def _record(self, consumer, record: Record) -> Record:
        return consumer.unpacked(record) if self.unpack else record

    def clips(self, clips: list[dict]) -> Iterator[Measured]:
        """Every clip once: first those split recorded everything for, then video by video."""
        stats = self.stats
        found = {c["clip_id"]: {s.key: self.handoff.get(s, c["clip_id"]) for s in self.consumers} for c in clips}
        recorded = [c for c in clips if None not in found[c["clip_id"]].values()]
        stats["clips_from_split"] = len(recorded)
        self.log(f"{self.label} {len(recorded)} of {len(clips)} clips from split's records")
        for clip in recorded:
            yield Measured(clip, {s.key: self._record(s, found[clip["clip_id"]][s.key]) for s in self.consumers})
        videos = by_video([c for c in clips if None in found[c["clip_id"]].values()])
        for n, (path, video_clips) in enumerate(videos.items(), 1):
            self.log(f"{self.label} decoding {n}/{len(videos)} {video_clips[0].get('relpath', path)}: "
                     f"{len(video_clips)} clips")
            yield from self._decode(path, video_clips, found)
        stats["decode_s"] = round(self.decode_s, 3)

    def _decode(self, path: str, clips: list[dict], found: dict) -> Iterator[Measured]:
        """One decode of a video's clips, for only the consumers that lack a record of one of them."""
        fed = [s for s in self.consumers if any(found[c["clip_id"]][s.key] is None for c in clips)]
        decoded_for = self.stats.setdefault("decoded_for", {})
        for consumer in fed:
            decoded_for[consumer.name] = decoded_for.get(consumer.name, 0) + len(clips)
        done: set[str] = set()
        started = time.perf_counter()
        try:
            for scan in scan_clips(path, clips, fed, self.decode_threads):
                self.decode_s += time.perf_counter() - started
                clip_id = scan.clip["clip_id"]
                done.add(clip_id)
                if not scan.frames or scan.damage:  # a clip missing frames is not measured from a part of it
                    why = scan.damaged or "no frame decoded in the clip's range"
                    yield Measured(scan.clip, None, f"{self.stage}: {why}")
                else:
                    have = found[clip_id]
                    yield Measured(scan.clip, {s.key: s.live_record() if have[s.key] is None
                                               else self._record(s, have[s.key]) for s in self.consumers})
                started = time.perf_counter()
        except Exception as exc:  # a broken file fails the clips it cost, not the task
            why = f"{self.stage} decode failed: {type(exc).__name__}: {exc}"
            for clip in clips:
                if clip["clip_id"] not in done:
                    yield Measured(clip, None, why)


def chunks(measured: Iterator[Measured]) -> Iterator[list[Measured]]:
    """Groups of clips for a policy that works on many at once, bounded by clips and by the live
    model inputs they hold in memory."""
    chunk: list[Measured] = []
    items = 0
    for m in measured:
        chunk.append(m)
        items += live_items(m)
        if len(chunk) >= CHUNK_CLIPS or items >= CHUNK_ITEMS:
            yield chunk
            chunk, items = [], 0
    if chunk:
        yield chunk


def live_items(m: Measured) -> int:
    """Model inputs of a clip held as decoded images (packed records are small)."""
    if m.records is None:
        return 0
    return sum(len(r.items) for r in m.records.values() if r.items is not None and not r.packed)


class MeasuringStage(Stage):
    """A stage made of frame consumers over the engine (filter: analyzers, score: scorers): what it
    loads, records and needs follows from its consumers."""

    cpus, mem = 1, "2G"
    consumers: Callable[..., list]  # (cfg, enabled_only=True) -> the consumers of the config

    @classmethod
    def models(cls, cfg) -> list:
        return [m for c in cls.consumers(cfg, enabled_only=False) for m in c.models(cfg.enabled and c.cfg.enabled)]

    @classmethod
    def resources(cls, cfg):
        from curate.plugin import Resources, gpus_of

        return Resources(cpus=cls.cpus, mem=cls.mem, gpus=gpus_of(d for c in cls.consumers(cfg) for d in c.devices()))

    @classmethod
    def recorded_consumers(cls, cfg) -> list:
        return cls.consumers(cfg)

    def preflight(self) -> None:
        # One after the other: loaded side by side (0.28 s against 0.35 s for OCR and NSFW), two threads
        # importing onnxruntime at once in a fresh process made one of them fail with an ImportError.
        self.measuring = type(self).consumers(self.cfg)
        for consumer in self.measuring:
            consumer.preflight()
