"""flash: per-frame mean luma; a flash is a jump above brightness_delta that returns within a few frames."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..decode import FrameNeed
from .base import Analyzer


def flash_frames(luma: np.ndarray, delta: float, return_frames: int) -> tuple[int, int]:
    """(number of flash frames, number of flash events) in a luma series."""
    flagged = np.zeros(len(luma), dtype=bool)
    events = 0
    i = 1
    while i < len(luma):
        base = luma[i - 1]
        if abs(luma[i] - base) > delta:
            for k in range(1, return_frames + 1):
                if i + k < len(luma) and abs(luma[i + k] - base) < delta / 2:
                    flagged[i:i + k] = True
                    events += 1
                    i += k
                    break
        i += 1
    return int(flagged.sum()), events


class FlashAnalyzer(Analyzer):
    name = "flash"
    cost = 1
    columns = {"flash_ratio": pl.Float64, "flash_events": pl.Int64}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(short_side=64, color="gray", every=cfg.sample_stride)

    def begin(self, clip):
        self.luma: list[float] = []

    def feed(self, frame):
        self.luma.append(float(frame.image(self.need).mean()))

    def end(self):
        if len(self.luma) < 2:
            return {"flash_ratio": 0.0, "flash_events": 0}
        count, events = flash_frames(np.asarray(self.luma), self.cfg.brightness_delta,
                                     max(1, self.cfg.return_frames // self.cfg.sample_stride))
        return {"flash_ratio": round(count / len(self.luma), 4), "flash_events": events}

    def rejects(self, result):
        if not self.cfg.record_only and result["flash_ratio"] > self.cfg.max_flash_ratio:
            return f"flash: flash_ratio {result['flash_ratio']:.3f} > max_flash_ratio {self.cfg.max_flash_ratio:g}"
        return None
