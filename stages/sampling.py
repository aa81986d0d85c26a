"""Which frames a consumer wants: `FrameNeed` declares them, `Sampler` picks them as they decode.

`sample_windows` gives the stretches of video that hold a time-sampled need's frames, so the decode
loop (stages/decode.py) can seek between them instead of decoding all of a clip.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    # with per_second: a clip gets round(duration x rate) samples (at least one) at the middles of
    # equal slices, not one at its first frame and then every 1/rate s (a 2.1 s clip: 1, not 2)
    spread: bool = False
    burst_s: float = 0.0  # with max_samples on an every-n-th need: a long clip is read in bursts this long
    # Colour images may be resized plane by plane with OpenCV (faster, within ~2 levels of swscale);
    # off for models that must see frames as their reference code made them (TransNetV2, scorers).
    fast_color: bool = False

    def for_clip(self, clip: dict) -> FrameNeed:
        """This need as applied to one clip: past `max_samples`, N samples spread over the clip, so a
        ten-minute whole video costs N samples (or N bursts for a need that wants consecutive frames)."""
        if not (self.max_samples or self.spread) or clip.get("end_s") is None:
            return self
        duration = float(clip["end_s"]) - float(clip.get("start_s") or 0.0)
        if self.spread and self.per_second:
            count = max(1, int(duration * self.per_second + 0.5))
            return replace(self, per_second=None, count=min(count, self.max_samples or count), max_samples=None,
                           spread=False)
        if self.per_second and duration * self.per_second > self.max_samples:
            return replace(self, per_second=None, count=self.max_samples, max_samples=None)
        if not sparse(self) and self.burst_s and duration > self.max_samples * self.burst_s:
            return replace(self, count=self.max_samples, max_samples=None)
        return self


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

    def wants(self, frame) -> bool:
        """True if the frame is a sample (or the successor of one, with pairs). Only `frame.time` is
        read, so recorded timestamps (stages/handoff.py) go through the same sampler as decoded frames."""
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
    seconds then costs its samples, not a decode of all of it (decode.iter_frames seeks between them)."""
    windows = []
    for clip in clips:
        end = float(clip["end_s"])
        for need in (n.for_clip(clip) for n in needs):
            length = max(SAMPLE_WINDOW_S, need.burst_s if need.count else 0.0)
            windows += [(t, min(end, t + length)) for t in sample_times(clip, need)]
    return windows
