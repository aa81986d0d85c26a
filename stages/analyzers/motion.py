"""motion: dense optical flow (OpenCV DIS) on frame pairs sampled at a set rate, at reduced size."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from curate.sections import Decision, Section

from ..decode import FrameNeed
from .base import Analyzer

REFERENCE_SHORT_SIDE = 360  # motion_px is pixels per frame as if the clip were 360 px high (640x360)


class MotionConfig(Section):
    enabled: bool = True
    pairs_per_s: float = Field(default=2.0, gt=0)
    max_pairs: int = Field(default=30, ge=1)  # a longer clip (a whole video) gets this many, spread evenly
    size: int = Field(default=160, ge=16)
    method: Literal["dis", "farneback"] = "dis"
    min_score: float = Decision(0.0005, ge=0)
    max_score: float | None = Decision(None, gt=0)
    record_only: bool = Decision(False)


class MotionAnalyzer(Analyzer):
    name = "motion"
    cost = 2
    columns = {"motion_score": "Float64", "motion_px": "Float64", "motion_pairs": "Int64"}
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
        self.pending = None
        self.magnitudes: list[float] = []
        self.shape = None

    def feed(self, frame):
        import numpy as np

        image = frame.image(self.need)
        if self.pending is None:
            self.pending = image
            return
        flow = self.flow()(self.pending, image)
        self.magnitudes.append(float(np.sqrt((flow ** 2).sum(axis=2)).mean()))
        self.shape = image.shape
        self.pending = None

    def end(self):
        if not self.magnitudes:
            return {"motion_score": None, "motion_px": None, "motion_pairs": 0}
        height, width = self.shape[:2]
        mean = sum(self.magnitudes) / len(self.magnitudes)
        return {"motion_score": round(mean / math.hypot(width, height), 6),
                "motion_px": round(mean * REFERENCE_SHORT_SIDE / min(width, height), 3),
                "motion_pairs": len(self.magnitudes)}

    def checks(self):
        from curate.decisions import above, below

        if self.cfg.record_only:
            return []
        found = [below("motion", "motion_score", self.cfg.min_score, "min_score", digits=4, label="static clip, ")]
        if self.cfg.max_score is not None:
            found.append(above("motion", "motion_score", self.cfg.max_score, "max_score", digits=4))
        return found
