"""nsfw: NudeNet's detector (its package ships the ONNX model) on sampled frames."""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.errors import CurateError

from ..decode import FrameNeed
from .base import Analyzer

EXPOSED = {"FEMALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED",
           "ANUS_EXPOSED"}
_DETECTOR: list = []


def load_detector():
    if not _DETECTOR:
        try:
            from nudenet import NudeDetector
        except ImportError as exc:
            raise CurateError(f"filter.nsfw needs nudenet ({exc.name} is missing): bash scripts/setup.sh "
                              "(pip install 'curate[vision]'), or disable it with filter.nsfw.enabled: false") from None
        _DETECTOR.append(NudeDetector())
    return _DETECTOR[0]


def frame_score(detections: list[dict]) -> float:
    """Highest confidence of an exposed class in one frame, in [0, 1]."""
    return max((float(d["score"]) for d in detections if d["class"] in EXPOSED), default=0.0)


class NsfwAnalyzer(Analyzer):
    name = "nsfw"
    cost = 11
    columns = {"nsfw_score": pl.Float64, "nsfw_mean": pl.Float64}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(short_side=320, color="bgr", per_second=1.0 / cfg.sample_every_s)

    def check(self):
        load_detector()

    def begin(self, clip):
        self.images: list[np.ndarray] = []

    def feed(self, frame):
        self.images.append(frame.image(self.need))

    def end(self):
        if not self.images:
            return {"nsfw_score": None, "nsfw_mean": None}
        detector = load_detector()
        scores = [frame_score(detector.detect(image)) for image in self.images]
        return {"nsfw_score": round(max(scores), 4), "nsfw_mean": round(float(np.mean(scores)), 4)}

    def rejects(self, result):
        score = result["nsfw_score"]
        if not self.cfg.record_only and score is not None and score > self.cfg.threshold:
            return f"nsfw: nsfw_score {score:.3f} > threshold {self.cfg.threshold:g}"
        return None
