"""Decode once: one threaded PyAV pass over a video hands each consumer the frames it asked for.

`scan_clips` is the one decode loop of every stage. A consumer (shot detector, analyzer, scorer)
declares a `FrameNeed` (stages/sampling.py), then per clip gets `begin(clip)`, `feed(frame)` for each
frame it asked for (a `Frame`, stages/pixels.py), and `end()` for its result. Every frame of the
wanted ranges is decoded once, with its own timestamp, so variable frame rate is handled. A
damaged stretch of the file (a packet the decoder rejects or the demuxer flags as corrupt) is
skipped to the next keyframe and recorded as a `Damage`, so one bad spot costs only the frames it
hides.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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


@dataclass
class Damage:
    """A stretch the decoder could not read: the frames after `after_s` and before `resume_s` are lost."""

    after_s: float | None  # the last good frame before it (None: none was decoded)
    resume_s: float | None  # the first good frame after it (None: decoding never resumed)
    error: str  # what broke first
    packets: int = 0  # packets dropped

    def overlaps(self, start: float, end: float | None) -> bool:
        """Whether the range [start, end) holds lost frames."""
        after = -1.0 if self.after_s is None else self.after_s
        return (end is None or end > after + EPS) and (self.resume_s is None or start < self.resume_s - EPS)

    def __str__(self) -> str:
        where = "at the start" if self.after_s is None else f"after {self.after_s:.2f} s"
        until = "never resumed" if self.resume_s is None else f"resumed at {self.resume_s:.2f} s"
        return f"decoding broke {where} ({self.error}), {until}"


def describe(damage: list[Damage]) -> str | None:
    """The damaged stretches as one reason; None for none."""
    return "; ".join(map(str, damage)) or None


def _decode(container, stream, damage: list[Damage], since: float | None = None) -> Iterator:
    """`container.decode(stream)`, surviving damage: a packet the decoder rejects or the demuxer
    flags as corrupt drops every packet up to the next keyframe (the frames between reference what
    was lost), and each such stretch is appended to `damage`. `since`: where a seek put decoding."""
    import av

    codec = stream.codec_context
    last = since  # the last good frame
    broken: Damage | None = None  # the damage being skipped, until a frame after it comes out
    skipping, resume_at = False, None  # dropping packets; the keyframe decoding restarted at

    def broke(error: str) -> None:
        nonlocal broken, skipping
        if broken is None:
            broken = Damage(last, None, error[:160])
            damage.append(broken)
        broken.packets += 1
        skipping = True

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:  # the demuxer lost the stream: nothing after it can be reached
            broke(f"{type(exc).__name__}: {exc}")
            return
        if skipping:
            if not packet.is_keyframe or packet.is_corrupt:
                broken.packets += 1
                continue
            skipping, resume_at = False, packet.pts
        if packet.is_corrupt:
            broke("a packet the demuxer flags as corrupt")
            continue
        try:
            frames = codec.decode(packet)
        except av.FFmpegError as exc:
            broke(f"{type(exc).__name__}: {exc}")
            codec.flush_buffers()  # the frames in flight reference the damage too
            continue
        for frame in frames:
            if frame.time is None:
                continue
            if broken is not None:
                if resume_at is not None and frame.pts is not None and frame.pts < resume_at:
                    continue  # a leading picture of the keyframe: it references the lost GOP
                broken.resume_s, broken = float(frame.time), None
            last = float(frame.time)
            yield frame


def iter_frames(path: str, ranges: list[tuple[float, float]] | None = None, threads: int = 0,
                damage: list[Damage] | None = None) -> Iterator[Frame]:
    """Decode `path` once, yielding the frames inside `ranges` (seconds, end exclusive; None: all).

    Between ranges it decodes through a short gap and seeks over a long one: long means more than
    twice the keyframe interval seen so far (GAP_SEEK_S before any is seen), so a seek lands past
    where decoding already is instead of decoding a GOP twice. A seek goes to the keyframe before
    the range and drops the frames before its start, so a range that starts mid-GOP still starts
    at its exact frame. `index` counts decoded frames from the video start when no range is given
    (a damaged stretch skips none), else it is only an ordinal within the decode. Damaged stretches
    are appended to `damage`.
    """
    import av

    from .cpus import decoder_threads, limit_opencv, task_threads

    damage = [] if damage is None else damage
    threads = decoder_threads(threads or task_threads())
    limit_opencv()  # every consumer of the decode resizes and converts with OpenCV
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.thread_count = threads
        index = 0
        if not ranges:
            for frame in _decode(container, stream, damage):
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
            return _decode(container, stream, damage, start - 0.001)

        keyframes: list[float] = []
        current, sought = 0, 0  # the span we are in or heading for; the span the last seek was for
        frames = seek(spans[0][0])
        while current < len(spans):
            frame = next(frames, None)
            if frame is None:
                return
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
    damage: list[Damage] = field(default_factory=list)  # damaged stretches that cost the clip frames

    @property
    def damaged(self) -> str | None:
        """Why the clip lacks frames, for its reason; None when it lacks none."""
        return describe(self.damage)


def scan_clips(path: str, clips: list[dict], consumers: list[FrameConsumer], threads: int = 0) -> Iterator[ClipScan]:
    """The decode loop: one pass over `path` feeds every consumer the frames of every clip.

    `clips` are dicts with `start_s` and `end_s` (seconds, end exclusive; `end_s` None = to the end
    of the video); they must not overlap. Clips come back in start order, each once all of its
    frames were fed, so the caller decides which consumers to `end()` (a cascade may skip some).
    A clip with no decodable frame comes back with `frames == 0`, and a clip that lost frames to a
    damaged stretch of the file (see `iter_frames`) with that `damage`. Other errors propagate: the
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

    damage: list[Damage] = []

    def scanned(clip: dict, frames: int) -> ClipScan:
        start = float(clip.get("start_s") or 0.0)
        return ClipScan(clip, frames, [d for d in damage if d.overlaps(start, clip.get("end_s"))])

    current, fed, end = -1, 0, None
    for frame in iter_frames(path, ranges, threads, damage):
        while current + 1 < len(order) and frame.time >= (order[current + 1].get("start_s") or 0.0) - EPS:
            if current >= 0:
                yield scanned(order[current], fed)
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
        yield scanned(order[current], fed)
    for clip in order[current + 1:]:
        begin(clip)
        yield scanned(clip, 0)
