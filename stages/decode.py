"""Decode once: one threaded PyAV pass over a video hands each consumer the frames it asked for.

`scan_clips` is the one decode loop of every stage. A consumer (shot detector, analyzer, scorer)
declares a `FrameNeed` (stages/sampling.py), then per clip gets `begin(clip)`, `feed(frame)` for each
frame it asked for (a `Frame`, stages/pixels.py), and `end()` for its result. Every frame of the
wanted ranges is decoded once, with its own timestamp, so variable frame rate is handled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .pixels import Frame
from .sampling import EPS, FrameNeed, Sampler, sample_windows, sparse

GAP_SEEK_S = 4.0  # between wanted ranges further apart than this we seek instead of decoding through


class FrameConsumer(Protocol):
    """What `scan_clips` feeds: detectors, analyzers and scorers all have this shape."""

    need: FrameNeed

    def begin(self, clip: dict) -> None: ...

    def feed(self, frame: Frame) -> None: ...

    def end(self) -> Any: ...


def iter_frames(path: str, ranges: list[tuple[float, float]] | None = None, threads: int = 0) -> Iterator[Frame]:
    """Decode `path` once, yielding the frames inside `ranges` (seconds, end exclusive; None: all).

    Between ranges it decodes through a short gap and seeks over a long one: long means more than
    twice the keyframe interval seen so far (GAP_SEEK_S before any is seen), so a seek lands past
    where decoding already is instead of decoding a GOP twice. A seek goes to the keyframe before
    the range and drops the frames before its start, so a range that starts mid-GOP still starts
    at its exact frame. `index` counts frames from the video start when no range is given, else it
    is only an ordinal within the decode.
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.thread_count = threads
        index = 0
        if not ranges:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                yield Frame(index, float(frame.time), frame, _rotation(frame))
                index += 1
            return
        spans: list[list[float]] = []
        for start, end in sorted(ranges):  # overlapping or touching ranges become one
            if spans and start <= spans[-1][1] + EPS:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])

        def seek(start: float):
            container.seek(max(0, int((start - 0.001) / stream.time_base)), stream=stream, backward=True)
            return container.decode(stream)

        keyframes: list[float] = []
        current, sought = 0, 0  # the span we are in or heading for; the span the last seek was for
        frames = seek(spans[0][0])
        while current < len(spans):
            frame = next(frames, None)
            if frame is None:
                return
            if frame.time is None:
                continue
            t = float(frame.time)
            if frame.key_frame and (not keyframes or t > keyframes[-1]):
                keyframes.append(t)
            while current < len(spans) and t >= spans[current][1] - EPS:
                current += 1
            if current == len(spans):
                return
            start = spans[current][0]
            if t >= start - EPS:
                yield Frame(index, t, frame, _rotation(frame))
                index += 1
                continue
            gop = (keyframes[-1] - keyframes[0]) / (len(keyframes) - 1) if len(keyframes) > 1 else GAP_SEEK_S / 2
            if sought != current and start - t > max(GAP_SEEK_S / 4, 2 * gop):
                frames, sought = seek(start), current


def _rotation(frame) -> int:
    # Display-matrix rotation, counter-clockwise degrees (PyAV >= 13 reads it per frame).
    return int(round(frame.rotation or 0)) % 360


@dataclass
class ClipScan:
    """A clip whose frames have all been fed: now its consumers' `end()` may be called."""

    clip: dict
    frames: int  # frames decoded inside the clip's range (only around the samples when every need samples
    # by time); 0: nothing decodable there


def scan_clips(path: str, clips: list[dict], consumers: list[FrameConsumer], threads: int = 0) -> Iterator[ClipScan]:
    """The decode loop: one pass over `path` feeds every consumer the frames of every clip.

    `clips` are dicts with `start_s` and `end_s` (seconds, end exclusive; `end_s` None = to the end
    of the video); they must not overlap. Clips come back in start order, each once all of its
    frames were fed, so the caller decides which consumers to `end()` (a cascade may skip some).
    A clip with no decodable frame comes back with `frames == 0`. Decode errors propagate: the
    clips not yet returned are the ones they cost.
    """
    order = sorted(clips, key=lambda c: c.get("start_s") or 0.0)
    if not order:
        return
    ranges = None
    if all(c.get("end_s") is not None for c in order):
        ranges = []
        for clip in order:  # a clip every need samples by time is decoded only around its samples
            if consumers and all(sparse(c.need.for_clip(clip)) for c in consumers):
                ranges += sample_windows([clip], [c.need for c in consumers])
            else:
                ranges.append((float(clip.get("start_s") or 0.0), float(clip["end_s"])))
    samplers = [Sampler(c.need) for c in consumers]
    pairs = list(zip(consumers, samplers))

    def begin(clip: dict) -> None:
        for consumer, sampler in pairs:
            sampler.reset(clip)
            consumer.begin(clip)

    current, fed, end = -1, 0, None
    for frame in iter_frames(path, ranges, threads):
        while current + 1 < len(order) and frame.time >= (order[current + 1].get("start_s") or 0.0) - EPS:
            if current >= 0:
                yield ClipScan(order[current], fed)
            current, fed = current + 1, 0
            end = order[current].get("end_s")
            begin(order[current])
        if current < 0 or (end is not None and frame.time >= end - EPS):
            continue
        fed += 1
        for consumer, sampler in pairs:
            if sampler.wants(frame):
                consumer.feed(frame)
    if current >= 0:
        yield ClipScan(order[current], fed)
    for clip in order[current + 1:]:
        begin(clip)
        yield ClipScan(clip, 0)
