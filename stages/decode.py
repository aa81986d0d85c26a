"""Decode once: one threaded PyAV pass over a video hands each consumer the frames it asked for.

`scan_clips` is the one decode loop of every stage. A consumer (shot detector, analyzer, scorer)
has one shape: it declares a `FrameNeed` (which frames: every n-th, a rate per second, or N spread
over the clip, optionally in pairs; at what size; in what colour), then per clip `begin(clip)`,
`feed(frame)` for each frame it asked for, and `end()` for its result. The loop decodes every
frame of the wanted ranges once, converts it at most once per distinct (size, colour) that some
consumer wants (swscale inside FFmpeg does the resize), applies rotation metadata, and uses each
frame's own timestamp, so variable frame rate is handled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Protocol

GAP_SEEK_S = 4.0  # between wanted ranges further apart than this we seek instead of decoding through
EPS = 1e-6


@dataclass(frozen=True)
class FrameNeed:
    short_side: int = 0  # resize so the short side is this many pixels (0: native size) ...
    long_side: int = 0  # ... or so the long side is (a model that letterboxes into a square)
    color: str = "gray"  # gray | rgb | bgr
    every: int = 1  # every n-th decoded frame ...
    per_second: float | None = None  # ... or this many frames per second of video time ...
    count: int | None = None  # ... or this many frames spread evenly over the clip
    pairs: bool = False  # each sampled frame comes with the one right after it (optical flow)
    width: int | None = None  # exact size instead of short_side (e.g. TransNetV2's 48x27)
    height: int | None = None
    max_samples: int | None = None  # a clip that would get more samples gets this many, spread evenly
    burst_s: float = 0.0  # with max_samples on an every-n-th need: a long clip is read in bursts this long
    # Colour images may be resized plane by plane with OpenCV (faster, within ~2 levels of swscale);
    # off for models that must see frames as their reference code made them (TransNetV2, scorers).
    fast_color: bool = False

    def for_clip(self, clip: dict) -> "FrameNeed":
        """This need as applied to one clip: past `max_samples`, N samples spread over the clip, so a
        ten-minute whole video costs N samples (or N bursts for a need that wants consecutive frames)."""
        if not self.max_samples or clip.get("end_s") is None:
            return self
        duration = float(clip["end_s"]) - float(clip.get("start_s") or 0.0)
        if self.per_second and duration * self.per_second > self.max_samples:
            return replace(self, per_second=None, count=self.max_samples, max_samples=None)
        if not sparse(self) and self.burst_s and duration > self.max_samples * self.burst_s:
            return replace(self, count=self.max_samples, max_samples=None)
        return self


class FrameConsumer(Protocol):
    """What `scan_clips` feeds: detectors, analyzers and scorers all have this shape."""

    need: FrameNeed

    def begin(self, clip: dict) -> None: ...

    def feed(self, frame: "Frame") -> None: ...

    def end(self) -> Any: ...


@dataclass
class Frame:
    index: int  # decode-order index from the start of the video (or of the decoded range)
    time: float  # presentation time in seconds
    source: Any  # the av.VideoFrame
    rotation: int
    _cache: dict = field(default_factory=dict)

    def mean_luma(self) -> float:
        """Mean brightness (0-255, full range) of the decoded luma plane, averaged by OpenCV in place:
        no conversion, a fraction of the cost of any image (flash needs only this)."""
        if "mean_luma" not in self._cache:
            plane = luma_plane(self.source)
            if plane is None:
                value = float(self.image(FrameNeed(width=32, height=18, color="gray")).mean())
            else:
                import cv2

                value = float(cv2.mean(plane)[0])
                if limited_range(self.source):
                    value = min(255.0, max(0.0, (value - 16) * 255.0 / 219.0))  # as full_range_lut() maps it
            self._cache["mean_luma"] = value
        return self._cache["mean_luma"]

    def image(self, need: FrameNeed):
        width, height = target_size(self.source.width, self.source.height, need, self.rotation)
        key = (width, height, need.color, need.fast_color)
        if key not in self._cache:
            self._cache[key] = convert(self.source, width, height, need.color, self.rotation, need.fast_color)
        return self._cache[key]


def even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def target_size(width: int, height: int, need: FrameNeed, rotation: int) -> tuple[int, int]:
    """Decoder-side (unrotated) size that gives the requested displayed size."""
    if need.width and need.height:
        w, h = need.width, need.height
        return (h, w) if rotation in (90, 270) else (w, h)
    if need.long_side and max(width, height) > need.long_side:
        scale = need.long_side / max(width, height)
    elif need.short_side and min(width, height) > need.short_side:
        scale = need.short_side / min(width, height)
    else:
        return width, height
    return even(width * scale), even(height * scale)


_FORMATS = {"gray": "gray", "rgb": "rgb24", "bgr": "bgr24"}


_FULL_RANGE: list = []
_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv420p10le", "nv12"}


def full_range_lut():
    """Limited-range (16-235) luma to full range, as FFmpeg's own gray conversion does."""
    if not _FULL_RANGE:
        import numpy as np

        _FULL_RANGE.append(np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8))
    return _FULL_RANGE[0]


def plane_array(plane):
    """One decoded 8-bit plane as a numpy view (row padding cut off), no copy."""
    import numpy as np

    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def luma_plane(frame):
    """The decoded Y plane itself, without a colour conversion (8-bit YUV formats only)."""
    if frame.format.name not in _YUV or frame.format.name.endswith("10le"):
        return None
    return plane_array(frame.planes[0])


def limited_range(frame) -> bool:
    """Video-range (16-235) samples, which full-range images need stretched."""
    return not frame.format.name.startswith("yuvj") and int(getattr(frame, "color_range", 0) or 0) != 2


_RANGE_LUTS: list = []


def _range_luts():
    """Limited-range luma and chroma to full range (what YCrCb->BGR expects)."""
    if not _RANGE_LUTS:
        import numpy as np

        levels = np.arange(256)
        _RANGE_LUTS.append(full_range_lut())
        _RANGE_LUTS.append(np.clip((levels - 128) * 255.0 / 224.0 + 128.5, 0, 255).astype(np.uint8))
    return _RANGE_LUTS


def shrink(image, width: int, height: int):
    """Area-average `image` down to width x height. From more than twice the size, a linear
    pre-shrink to exactly twice it comes first: OpenCV's area resize at an odd ratio (1080p to
    256x144: 1.9 ms) costs more than decoding the frame; this way it is 0.06 ms, and each output
    pixel still averages 2x2 linear samples."""
    import cv2

    if image.shape[1] > 2 * width and image.shape[0] > 2 * height:
        image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def small_color(frame, width: int, height: int, color: str):
    """A downscaled BGR/RGB image of an 8-bit 4:2:0 frame, resized plane by plane with OpenCV and
    converted at the small size: about a third of the cost of swscale's convert-then-scale, and
    within about 2 levels of it. None when the frame is not 8-bit 4:2:0 or would be made larger."""
    if frame.format.name not in ("yuv420p", "yuvj420p") or width > frame.width or height > frame.height:
        return None
    import cv2

    planes = frame.planes
    y = plane_array(planes[0])
    y = y.copy() if (width, height) == (frame.width, frame.height) else shrink(y, width, height)
    u, v = (plane_array(p) for p in planes[1:3])
    if u.shape[1] >= width:  # chroma is half size: shrink it too, or (small targets) bring it up
        u, v = shrink(u, width, height), shrink(v, width, height)
    else:
        u = cv2.resize(u, (width, height), interpolation=cv2.INTER_LINEAR)
        v = cv2.resize(v, (width, height), interpolation=cv2.INTER_LINEAR)
    if limited_range(frame):
        luma_lut, chroma_lut = _range_luts()
        y, u, v = cv2.LUT(y, luma_lut), cv2.LUT(u, chroma_lut), cv2.LUT(v, chroma_lut)
    code = cv2.COLOR_YCrCb2BGR if color == "bgr" else cv2.COLOR_YCrCb2RGB
    return cv2.cvtColor(cv2.merge([y, v, u]), code)


def convert(frame, width: int, height: int, color: str, rotation: int, fast_color: bool = False):
    import numpy as np

    luma = luma_plane(frame) if color == "gray" else None
    fast = small_color(frame, width, height, color) if fast_color and color in ("bgr", "rgb") else None
    if luma is not None:
        import cv2

        image = shrink(luma, width, height) if (width, height) != (
            luma.shape[1], luma.shape[0]) else luma
        if limited_range(frame):
            image = cv2.LUT(image, full_range_lut())
    elif fast is not None:
        image = fast
    else:
        image = frame.to_ndarray(format=_FORMATS[color], width=width, height=height)
    if rotation:
        # Display matrix rotation is counter-clockwise degrees; np.rot90 with k turns the same way.
        image = np.rot90(image, k=rotation // 90)
    # Frame planes may carry row padding; OpenCV wants contiguous images.
    return np.ascontiguousarray(image)


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


class Sampler:
    """Decides, frame by frame, whether a FrameNeed wants this frame (or is owed its pair)."""

    def __init__(self, need: FrameNeed):
        self.need = self.base = need
        self.count, self.next_time, self.want_next, self.burst_until = 0, None, False, None
        self.targets: list[float] = []

    def reset(self, clip: dict) -> None:
        """Start a clip: sampling restarts at its first frame."""
        self.need = self.base.for_clip(clip)
        self.count, self.next_time, self.want_next, self.burst_until = 0, None, False, None
        self.targets = []
        if self.need.count:
            start = float(clip.get("start_s") or 0.0)
            end = clip.get("end_s")
            if end is None:
                raise ValueError("FrameNeed.count needs clips with an end time (end_s)")
            step = (float(end) - start) / self.need.count
            # The middle of each of N equal slices: never the first or last frame of a cut.
            self.targets = [start + (i + 0.5) * step for i in range(self.need.count)][::-1]

    def wants(self, frame: Frame) -> bool:
        """True if the frame is a sample (or the successor of one, with pairs)."""
        if self.want_next:
            self.want_next = False
            return True
        need = self.need
        if self.burst_until is not None:  # inside a burst: every n-th frame until it ends
            if frame.time < self.burst_until - EPS:
                self.count += 1
                return self.count % need.every == 0
            self.burst_until = None
        if need.count:
            hit = bool(self.targets) and frame.time >= self.targets[-1] - EPS
            while self.targets and frame.time >= self.targets[-1] - EPS:
                self.targets.pop()  # a clip with fewer frames than targets gives each frame once
        elif need.per_second:
            if self.next_time is None:
                self.next_time = frame.time
            hit = frame.time >= self.next_time - EPS
            while frame.time >= self.next_time - EPS:  # past a gap (seeked over), the next sample is ahead
                self.next_time += 1.0 / need.per_second
        else:
            hit = self.count % need.every == 0
        self.count += 1
        if hit and need.pairs:
            self.want_next = True
        if hit and need.count and need.burst_s:
            self.burst_until, self.count = frame.time + need.burst_s, 0
        return hit


SAMPLE_WINDOW_S = 0.5  # decoded after each sample time: the frame at it, and its successor for pairs


def sparse(need: FrameNeed) -> bool:
    """A need that samples by time (a rate, or N per clip) rather than every n-th frame."""
    return bool(need.per_second or need.count)


def sample_times(clip: dict, need: FrameNeed) -> list[float]:
    start, end = float(clip.get("start_s") or 0.0), float(clip["end_s"])
    if need.count:
        step = (end - start) / need.count
        return [start + (i + 0.5) * step for i in range(need.count)]
    step = 1.0 / need.per_second
    return [start + i * step for i in range(max(1, int((end - start) / step - 1e-9) + 1))]


def sample_windows(clips: list[dict], needs: list[FrameNeed]) -> list[tuple[float, float]]:
    """The stretches of video that hold every sample of every need: a long clip sampled every few
    seconds then costs its samples, not a decode of all of it (iter_frames seeks between them)."""
    windows = []
    for clip in clips:
        end = float(clip["end_s"])
        for need in (n.for_clip(clip) for n in needs):
            length = max(SAMPLE_WINDOW_S, need.burst_s if need.count else 0.0)
            windows += [(t, min(end, t + length)) for t in sample_times(clip, need)]
    return windows


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
