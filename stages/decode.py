"""Decode once: one threaded PyAV pass over a video hands each consumer the frames it asked for.

A consumer declares a `FrameNeed` (which frames: every n-th, or a rate per second; at what size;
in what colour). The pass decodes every frame once, converts it at most once per distinct
(size, colour) that some consumer wants now (swscale inside FFmpeg does the resize), applies
rotation metadata, and uses each frame's own timestamp, so variable frame rate is handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

GAP_SEEK_S = 4.0  # between wanted ranges further apart than this we seek instead of decoding through


@dataclass(frozen=True)
class FrameNeed:
    short_side: int = 0  # resize so the short side is this many pixels (0: native size)
    color: str = "gray"  # gray | rgb | bgr
    every: int = 1  # every n-th decoded frame ...
    per_second: float | None = None  # ... or this many frames per second of video time
    with_next: bool = False  # also the frame right after each sampled one (optical flow pairs)
    width: int | None = None  # exact size instead of short_side (e.g. TransNetV2's 48x27)
    height: int | None = None


@dataclass
class Frame:
    index: int  # decode-order index from the start of the video (or of the decoded range)
    time: float  # presentation time in seconds
    source: Any  # the av.VideoFrame
    rotation: int
    _cache: dict = field(default_factory=dict)

    def image(self, need: FrameNeed) -> np.ndarray:
        width, height = target_size(self.source.width, self.source.height, need, self.rotation)
        key = (width, height, need.color)
        if key not in self._cache:
            self._cache[key] = convert(self.source, width, height, need.color, self.rotation)
        return self._cache[key]


def even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def target_size(width: int, height: int, need: FrameNeed, rotation: int) -> tuple[int, int]:
    """Decoder-side (unrotated) size that gives the requested displayed size."""
    if need.width and need.height:
        w, h = need.width, need.height
        return (h, w) if rotation in (90, 270) else (w, h)
    if not need.short_side or min(width, height) <= need.short_side:
        return width, height
    scale = need.short_side / min(width, height)
    return even(width * scale), even(height * scale)


_FORMATS = {"gray": "gray", "rgb": "rgb24", "bgr": "bgr24"}


# Limited-range (16-235) luma to full range, as FFmpeg's own gray conversion does.
_FULL_RANGE = np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8)
_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv420p10le", "nv12"}


def luma_plane(frame) -> np.ndarray | None:
    """The decoded Y plane itself, without a colour conversion (8-bit YUV formats only)."""
    if frame.format.name not in _YUV or frame.format.name.endswith("10le"):
        return None
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def convert(frame, width: int, height: int, color: str, rotation: int) -> np.ndarray:
    luma = luma_plane(frame) if color == "gray" else None
    if luma is not None:
        import cv2

        image = cv2.resize(luma, (width, height), interpolation=cv2.INTER_AREA) if (width, height) != (
            luma.shape[1], luma.shape[0]) else luma
        if not frame.format.name.startswith("yuvj") and int(getattr(frame, "color_range", 0) or 0) != 2:
            image = cv2.LUT(image, _FULL_RANGE)
    else:
        image = frame.to_ndarray(format=_FORMATS[color], width=width, height=height)
    if rotation:
        # Display matrix rotation is counter-clockwise degrees; np.rot90 with k turns the same way.
        image = np.rot90(image, k=rotation // 90)
    # Frame planes may carry row padding; OpenCV wants contiguous images.
    return np.ascontiguousarray(image)


def iter_frames(path: str, ranges: list[tuple[float, float]] | None = None, threads: int = 0) -> Iterator[Frame]:
    """Decode `path` once, yielding frames inside `ranges` (seconds, end exclusive; None: all).

    Seeks to the keyframe before each range start and drops the frames before it, so a range
    that starts mid-GOP still starts at its exact frame. `index` counts frames from the video
    start when no range is given, else it is only an ordinal within the decode.
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
        ranges = sorted(ranges)
        merged: list[list[float]] = []
        for start, end in ranges:  # decode through small gaps, seek over big ones
            if merged and start - merged[-1][1] <= GAP_SEEK_S:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            container.seek(max(0, int((start - 0.001) / stream.time_base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t = float(frame.time)
                if t < start - 1e-6:
                    continue
                if t >= end - 1e-6:
                    break
                yield Frame(index, t, frame, _rotation(frame))
                index += 1


def _rotation(frame) -> int:
    # Display-matrix rotation, counter-clockwise degrees (PyAV >= 13 reads it per frame).
    return int(round(frame.rotation or 0)) % 360


class Sampler:
    """Decides, frame by frame, whether a FrameNeed wants this frame (and its successor)."""

    def __init__(self, need: FrameNeed):
        self.need = need
        self.count = 0
        self.next_time: float | None = None
        self.want_next = False

    def reset(self) -> None:
        self.count, self.next_time, self.want_next = 0, None, False

    def wants(self, frame: Frame) -> bool:
        """True if the frame is a sample (or the successor of one, for with_next)."""
        if self.want_next:
            self.want_next = False
            return True
        need = self.need
        if need.per_second:
            if self.next_time is None:
                self.next_time = frame.time
            hit = frame.time >= self.next_time - 1e-6
            if hit:
                self.next_time += 1.0 / need.per_second
        else:
            hit = self.count % need.every == 0
        self.count += 1
        if hit and need.with_next:
            self.want_next = True
        return hit
