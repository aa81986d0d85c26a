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

import math
from typing import Literal

from pydantic import Field

from curate.sections import Decision, Section

from ..decode import FrameNeed
from .base import Analyzer

REFERENCE_SHORT_SIDE = 360  # motion_px is pixels per frame as if the clip were 360 px high (640x360)
CHANGE_LEVELS = 10  # luma change (0-255) that counts as a pixel changing between samples


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
        self.pending = self.last_sample = None
        self.magnitudes: list[float] = []
        self.sample_changes: list[float] = []  # between consecutive samples
        self.pair_changes: list[float] = []  # within each pair (for clips with one sample)
        self.shape = None

    @staticmethod
    def changed(a, b) -> float:
        import cv2

        return float((cv2.absdiff(a, b) > CHANGE_LEVELS).mean())

    def feed(self, frame):
        import numpy as np

        image = frame.image(self.need)
        if self.pending is None:  # a sample: compare with the one before
            if self.last_sample is not None and self.last_sample.shape == image.shape:
                self.sample_changes.append(self.changed(self.last_sample, image))
            self.pending = self.last_sample = image
            return
        flow = self.flow()(self.pending, image)
        self.magnitudes.append(float(np.sqrt((flow ** 2).sum(axis=2)).mean()))
        self.pair_changes.append(self.changed(self.pending, image))
        self.shape = image.shape
        self.pending = None

    def end(self):
        if not self.magnitudes:
            return {"motion_score": None, "motion_px": None, "motion_area": None, "motion_pairs": 0}
        height, width = self.shape[:2]
        mean = sum(self.magnitudes) / len(self.magnitudes)
        changes = sorted(self.sample_changes or self.pair_changes)
        return {"motion_score": round(mean / math.hypot(width, height), 6),
                "motion_px": round(mean * REFERENCE_SHORT_SIDE / min(width, height), 3),
                "motion_area": round(changes[len(changes) // 2], 5),
                "motion_pairs": len(self.magnitudes)}

    def checks(self):
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
