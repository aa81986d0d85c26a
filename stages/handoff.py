"""What split's decode hands to the filter and score stages, so that they need not decode again.

Split decodes every frame of every video. Each analyzer or scorer that can (flash, motion, OCR,
NSFW, quality) gives split a recorder: one more consumer of that decode, keeping what it reads per
frame or per grid sample (a brightness, a flow measure, a small JPEG, a few image statistics).
Once split knows the clips, each recorder makes a clip's `Record`: its final columns (flash,
motion) or its model inputs picked as the live sampler would pick them (OCR, NSFW, quality).
Split writes the records beside its part, tagged with the settings they were made with. A later
stage uses a record only while those settings still match, and decodes the clips it has no record
for (split kind none, a clip between two grid samples, settings changed since split ran).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from .sampling import EPS, FrameNeed, Sampler, sample_times

VERSION = 1  # bump when what a recorder keeps changes meaning
GRID_MIN_S = 0.25  # the grid of model inputs is never finer than this
JITTER = 0.5  # sample k lies in [k, k + JITTER) grid steps


@dataclass
class Record:
    columns: dict[str, Any] | None = None  # an analyzer's finished columns ...
    items: list | None = None  # ... or a model's inputs: packed bytes (Recordable.pack) ...
    packed: bool = True  # ... or, from a decode in the stage itself, ready for `infer`


def grid_seconds(config) -> float:
    """Step of the recorded model inputs: two samples are at most (1 + JITTER) steps apart, so
    every clip (at least split.min_s long) holds one."""
    return max(GRID_MIN_S, float(config.split.min_s) / (1 + JITTER))


def settings_of(consumer, grid_s: float) -> str:
    """What a record depends on: the consumer's settings (thresholds aside) and the grid."""
    from curate.sections import fingerprint_fields

    text = json.dumps([VERSION, grid_s, fingerprint_fields(consumer.cfg, with_decisions=False)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pick_frames(times: list[float], clip: dict, need: FrameNeed) -> list[int]:
    """Indices of the (sorted) frame `times` inside the clip that a live sampler of `need` takes:
    for a recording of every frame, this is exactly what the live decode would feed."""
    start, end = float(clip.get("start_s") or 0.0), float(clip["end_s"])
    sampler = Sampler(replace(need, pairs=False))
    sampler.reset(clip)
    chosen = []
    for i in range(bisect.bisect_left(times, start - EPS), len(times)):
        if times[i] >= end - EPS:
            break
        if sampler.wants(SimpleNamespace(time=times[i])):
            chosen.append(i)
    return chosen


def pick_grid(times: list[float], clip: dict, need: FrameNeed) -> list[int]:
    """Indices of the grid samples (sorted `times`) inside the clip nearest to the times a live
    sampler of a time-based `need` would take (a rate from the clip's start, or N spread over it),
    each grid sample at most once."""
    start, end = float(clip.get("start_s") or 0.0), float(clip["end_s"])
    lo, hi = bisect.bisect_left(times, start - EPS), bisect.bisect_left(times, end - EPS)
    if lo >= hi:
        return []
    chosen: list[int] = []
    for t in sample_times(clip, need.for_clip(clip)):
        at = bisect.bisect_left(times, t, lo, hi)
        nearest = min((i for i in (at - 1, at) if lo <= i < hi), key=lambda i: abs(times[i] - t))
        if not chosen or nearest > chosen[-1]:
            chosen.append(nearest)
    return chosen


class WholeVideoRecorder:
    """A fresh instance of an analyzer fed the whole video (split's decode) under `need`; a
    subclass makes each clip's Record from what that instance kept (`for_clip`)."""

    def __init__(self, analyzer, need: FrameNeed):
        self.analyzer = analyzer
        self.live = type(analyzer)(analyzer.cfg)
        self.need = need

    def begin(self, clip: dict) -> None:
        self.live.begin(clip)

    def feed(self, frame) -> None:
        self.live.feed(frame)

    def end(self) -> None:
        return None


GOLDEN = 0.6180339887498949


class GridRecorder:
    """A model consumer's inputs (`item`, packed) on a time grid over the whole video; a clip then
    gets the grid samples nearest the ones its live sampler would take. Sample k is taken at
    k + JITTER x (a low-discrepancy sequence) grid steps, not on whole steps: a grid in step with
    the encoder's keyframe interval would sample only one kind of frame (keyframes look less blocky)."""

    need = FrameNeed()  # every frame passes by; only the grid samples are converted

    def __init__(self, consumer, grid_s: float):
        self.consumer, self.grid_s = consumer, grid_s

    def at(self, k: int) -> float:
        return (k + JITTER * ((k * GOLDEN) % 1.0)) * self.grid_s

    def begin(self, clip: dict) -> None:
        self.times: list[float] = []
        self.items: list[bytes] = []
        self.next = 0

    def feed(self, frame) -> None:
        if frame.time < self.at(self.next) - EPS:
            return
        self.times.append(frame.time)
        self.items.append(self.consumer.pack(self.consumer.item(frame)))
        while self.at(self.next) <= frame.time + EPS:
            self.next += 1

    def end(self) -> None:
        return None

    def for_clip(self, clip: dict) -> Record | None:
        chosen = pick_grid(self.times, clip, self.consumer.need)
        return Record(items=[self.items[i] for i in chosen]) if chosen else None


class Guarded:
    """A recorder whose failure costs only its own records (the later stage then decodes those
    clips itself, and reports any error there), never split's shots."""

    def __init__(self, recorder):
        self.recorder, self.need, self.error = recorder, recorder.need, None

    def begin(self, clip: dict) -> None:
        self.error = None
        self.recorder.begin(clip)

    def feed(self, frame) -> None:
        if self.error is None:
            try:
                self.recorder.feed(frame)
            except Exception as exc:  # noqa: BLE001 - any failure only drops this recorder's records
                self.error = exc

    def end(self) -> None:
        return None

    def for_clip(self, clip: dict) -> Record | None:
        if self.error is not None:
            return None
        try:
            return self.recorder.for_clip(clip)
        except Exception:  # noqa: BLE001
            return None


def recorders(config, stages: list[str]) -> list[tuple[Any, Any, str]]:
    """(consumer, recorder, settings) for every enabled consumer of the later stages that records."""
    from stages import STAGES

    grid = grid_seconds(config)
    found = []
    for name in stages:
        section = config.stage_section(name)
        if not section.enabled:
            continue
        for consumer in STAGES[name].load().recorded_consumers(section):
            recorder = consumer.recorder(grid)
            if recorder is not None:
                found.append((consumer, Guarded(recorder), settings_of(consumer, grid)))
    return found


def part_path(run, index: int):
    """Where split's records of one index live: beside its part."""
    return run.stage_part("split", index).with_suffix(".handoff.parquet")


def write(path, rows: list[dict]) -> None:
    import polars as pl

    from curate.rundir import atomic_write_parquet

    if not rows:
        path.unlink(missing_ok=True)
        return
    schema = {"clip_id": pl.Utf8, "consumer": pl.Utf8, "settings": pl.Utf8, "columns": pl.Utf8,
              "items": pl.List(pl.Binary)}
    atomic_write_parquet(path, pl.DataFrame(rows, schema=schema))


def row(clip_id: str, consumer, settings: str, record: Record) -> dict:
    return {"clip_id": clip_id, "consumer": consumer.key, "settings": settings,
            "columns": json.dumps(record.columns) if record.columns is not None else None,
            "items": record.items}


class Handoff:
    """The records split left for one index, of the consumers a stage runs, made with the
    settings those consumers have now (any other record is as good as none)."""

    def __init__(self, records: dict[tuple[str, str], Record]):
        self.records = records

    @classmethod
    def read(cls, path, config, consumers: list) -> Handoff:
        """The records of these consumers only (a stage never loads another stage's images)."""
        grid = grid_seconds(config)
        settings = {consumer.key: settings_of(consumer, grid) for consumer in consumers}
        records: dict[tuple[str, str], Record] = {}
        if path.is_file() and settings:
            import polars as pl

            wanted = [{"consumer": k, "settings": v} for k, v in settings.items()]
            current = pl.struct("consumer", "settings").is_in(wanted)
            for r in pl.scan_parquet(path).filter(current).collect().iter_rows(named=True):
                columns = json.loads(r["columns"]) if r["columns"] is not None else None
                records[(r["consumer"], r["clip_id"])] = Record(columns, r["items"])
        return cls(records)

    def get(self, consumer, clip_id: str) -> Record | None:
        return self.records.get((consumer.key, clip_id))
