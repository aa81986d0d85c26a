"""motion: how much moves, and whether anything moves at all.

Frame pairs (a frame and its successor) are sampled at a set rate at reduced size:
- `motion_score` / `motion_px`: mean dense optical flow (OpenCV DIS) over the pairs: how much
  the picture moves (camera and subjects), for ranking and an upper limit;
- `motion_area`: the median, over consecutive samples, of the share of pixels whose luma changed by
  more than CHANGE_LEVELS between them: whether anything moves. A still image or a frozen frame
  gives 0 (re-encoding noise stays under the level); a fixed camera on a person talking gives about
  the share of the frame the person's moving parts cover. The static check uses this, because
  mean flow over a fixed camera is tiny even when people move in it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import replace
from typing import Literal

from pydantic import Field

from curate.sections import Decision, Section

from ..handoff import Record, WholeVideoRecorder, pick_grid
from ..sampling import EPS, FrameNeed
from .base import Analyzer

REFERENCE_SHORT_SIDE = 360  # motion_px is pixels per frame as if the clip were 360 px high (640x360)
CHANGE_LEVELS = 10  # luma change (0-255) that counts as a pixel changing between samples
# OpenCV's DIS builds its pyramid from the frame's size (coarsest level: the lesser of log2(long side / 32),
# rounded, and log2(short side / 8)); under its finest level (2 in the FAST preset) there is no level at
# all, and it raises, returns NaN or crashes the process (a 4x200 strip, an 8x8 thumbnail). Frames with
# a short side under 32 px or a long side under 96 px are enlarged for the flow.
MIN_FLOW_SHORT, MIN_FLOW_LONG = 32, 96


class MotionConfig(Section):
    enabled: bool = True
    pairs_per_s: float = Field(default=2.0, gt=0)
    max_pairs: int = Field(default=30, ge=1)  # a longer clip (a whole video) gets this many, spread evenly
    size: int = Field(default=160, ge=16)
    method: Literal["dis", "farneback"] = "dis"
    # A clip in which less than this share of the frame changes between samples is static.
    min_area: float | None = Decision(0.001, ge=0, le=1)
    min_score: float | None = Decision(None, ge=0)
    max_score: float | None = Decision(None, gt=0)
    record_only: bool = Decision(False)


class MotionAnalyzer(Analyzer):
    name = "motion"
    cost = 2
    columns = {"motion_score": "Float64", "motion_px": "Float64", "motion_area": "Float64", "motion_pairs": "Int64"}
    Config = MotionConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(short_side=cfg.size, color="gray", per_second=cfg.pairs_per_s, pairs=True,
                              max_samples=cfg.max_pairs)
        self._flow = None

    def flow(self):
        if self._flow is None:
            import cv2

            if self.cfg.method == "farneback":
                self._flow = lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            else:
                dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
                self._flow = lambda a, b: dis.calc(a, b, None)
        return self._flow

    def begin(self, clip):
        self.pending = self.pending_time = self.last_sample = None
        # (time, flow magnitude, change within the pair, change since the last sample, successor's time)
        self.samples: list[tuple] = []
        self.shape = None

    @staticmethod
    def changed(a, b) -> float:
        import cv2

        # counted by OpenCV: numpy's boolean mean costs 5x as much per pair
        moved = cv2.threshold(cv2.absdiff(a, b), CHANGE_LEVELS, 255, cv2.THRESH_BINARY)[1]
        return cv2.countNonZero(moved) / moved.size

    def flow_magnitude(self, a, b) -> float:
        """Mean length of the flow vectors from a to b, in a's pixels. A frame too small for the flow
        (MIN_FLOW_SHORT, MIN_FLOW_LONG) is enlarged by a whole factor for it, and its vectors shrink by
        that factor again."""
        import cv2

        factor = max(-(-MIN_FLOW_SHORT // min(a.shape[:2])), -(-MIN_FLOW_LONG // max(a.shape[:2])))
        if factor > 1:
            size = (a.shape[1] * factor, a.shape[0] * factor)
            a, b = (cv2.resize(x, size, interpolation=cv2.INTER_NEAREST) for x in (a, b))
        flow = self.flow()(a, b)
        # OpenCV: numpy's squares and sums cost as much as the flow
        return cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0] / factor

    def feed(self, frame):
        image = frame.image(self.need)
        if self.pending is None:  # a sample: wait for its successor
            self.pending, self.pending_time = image, frame.time
            return
        since_last = None
        if self.last_sample is not None and self.last_sample.shape == self.pending.shape:
            since_last = self.changed(self.last_sample, self.pending)
        self.samples.append((self.pending_time, self.flow_magnitude(self.pending, image),
                             self.changed(self.pending, image), since_last, frame.time))
        self.shape, self.last_sample, self.pending = image.shape, self.pending, None

    def end(self):
        return self.summarize(self.samples, [s[3] for s in self.samples if s[3] is not None], self.shape)

    def summarize(self, pairs: list[tuple], sample_changes: list[float], shape) -> dict:
        """Columns from the measured pairs (time, flow magnitude, change within the pair, ...) and the
        changes between consecutive samples (a clip with one sample falls back to its pair's change)."""
        if not pairs:
            return {"motion_score": None, "motion_px": None, "motion_area": None, "motion_pairs": 0}
        height, width = shape[:2]
        mean = sum(p[1] for p in pairs) / len(pairs)
        changes = sorted(sample_changes or [p[2] for p in pairs])
        return {"motion_score": round(mean / math.hypot(width, height), 6),
                "motion_px": round(mean * REFERENCE_SHORT_SIDE / min(width, height), 3),
                "motion_area": round(changes[len(changes) // 2], 5),
                "motion_pairs": len(pairs)}

    def recorder(self, grid_s: float):
        return MotionRecorder(self)

    def threshold_checks(self):
        from curate.decisions import above, below

        if self.cfg.record_only:
            return []
        found = []
        if self.cfg.min_area is not None:
            found.append(below("motion", "motion_area", self.cfg.min_area, "min_area", digits=5, label="static clip, "))
        if self.cfg.min_score is not None:
            found.append(below("motion", "motion_score", self.cfg.min_score, "min_score", digits=4, label="slow, "))
        if self.cfg.max_score is not None:
            found.append(above("motion", "motion_score", self.cfg.max_score, "max_score", digits=4))
        return found


class MotionRecorder(WholeVideoRecorder):
    """Split's decode measures pairs on a grid of the analyzer's rate from the video's start; a
    clip takes the pairs inside it nearest the live sample times (at most max_pairs) and the
    changes between consecutive grid samples inside it, and gets its columns without another decode."""

    def __init__(self, analyzer: MotionAnalyzer):
        super().__init__(analyzer, replace(analyzer.need, max_samples=None))

    def for_clip(self, clip: dict):
        samples = self.live.samples
        start, end = clip["start_s"] - EPS, clip["end_s"] - EPS
        first = bisect.bisect_left(samples, start, key=lambda s: s[0])
        inside = []
        for i in range(first, len(samples)):
            if samples[i][4] >= end:  # a pair must end inside the clip: no pair across a cut
                break
            inside.append(i)
        if not inside:
            return None
        chosen = pick_grid([samples[i][0] for i in inside], clip, self.analyzer.need)
        # Changes between consecutive grid samples inside the clip (the first looks back before it).
        changes = [samples[i][3] for i in inside[1:] if samples[i][3] is not None]
        return Record(columns=self.analyzer.summarize([samples[inside[i]] for i in chosen], changes, self.live.shape))
