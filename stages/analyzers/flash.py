"""flash: per-frame mean luma; a flash is a jump above brightness_delta that returns within a few frames."""

from __future__ import annotations

from pydantic import Field

from curate.sections import Decision, Section

from ..handoff import Record, WholeVideoRecorder, pick_frames
from ..sampling import FrameNeed
from .base import Analyzer


class FlashConfig(Section):
    enabled: bool = True
    sample_stride: int = Field(default=1, ge=1)
    brightness_delta: float = Field(default=40.0, gt=0)
    return_frames: int = Field(default=4, ge=1)
    # A clip longer than max_bursts x burst_s (a whole video) is read in that many bursts, not in full.
    max_bursts: int = Field(default=30, ge=1)
    burst_s: float = Field(default=2.0, gt=0)
    max_flash_ratio: float = Decision(0.02, ge=0, le=1)
    record_only: bool = Decision(False)


def flash_frames(luma, delta: float, return_frames: int) -> tuple[int, int]:
    """(number of flash frames, number of flash events) in a luma series."""
    flagged = [False] * len(luma)
    events = 0
    i = 1
    while i < len(luma):
        base = luma[i - 1]
        if abs(luma[i] - base) > delta:
            for k in range(1, return_frames + 1):
                if i + k < len(luma) and abs(luma[i + k] - base) < delta / 2:
                    flagged[i:i + k] = [True] * k
                    events += 1
                    i += k
                    break
        i += 1
    return sum(flagged), events


def runs(times: list[float]) -> list[tuple[int, int]]:
    """Index ranges of consecutive frames: a gap of more than 4 median frame steps starts a new run."""
    steps = sorted(b - a for a, b in zip(times, times[1:]))
    gap = 4 * steps[len(steps) // 2] if steps else 0.0
    cuts = [i for i in range(1, len(times)) if times[i] - times[i - 1] > gap]
    return list(zip([0] + cuts, cuts + [len(times)]))


class FlashAnalyzer(Analyzer):
    name = "flash"
    cost = 1
    columns = {"flash_ratio": "Float64", "flash_events": "Int64"}
    Config = FlashConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        # which frames only: flash reads each frame's mean brightness off its luma plane, no image
        self.need = FrameNeed(every=cfg.sample_stride, max_samples=cfg.max_bursts, burst_s=cfg.burst_s)

    def begin(self, clip):
        self.luma: list[float] = []
        self.times: list[float] = []

    def feed(self, frame):
        self.luma.append(frame.mean_luma())
        self.times.append(frame.time)

    def end(self):
        return self.summarize(self.luma, self.times)

    def summarize(self, luma: list[float], times: list[float]) -> dict:
        if len(luma) < 2:
            return {"flash_ratio": 0.0, "flash_events": 0}
        count = events = 0
        for start, stop in runs(times):  # bursts of a long clip are checked one by one, never across a gap
            found = flash_frames(luma[start:stop], self.cfg.brightness_delta,
                                 max(1, self.cfg.return_frames // self.cfg.sample_stride))
            count, events = count + found[0], events + found[1]
        return {"flash_ratio": round(count / len(luma), 4), "flash_events": events}

    def recorder(self, grid_s: float):
        return FlashRecorder(self)

    def threshold_checks(self):
        from curate.decisions import above

        if self.cfg.record_only:
            return []
        return [above("flash", "flash_ratio", self.cfg.max_flash_ratio, "max_flash_ratio")]


class FlashRecorder(WholeVideoRecorder):
    """Split's decode keeps every frame's brightness; a clip then picks its frames as the live
    sampler would (stride, bursts) and gets its columns without another decode."""

    def __init__(self, analyzer: FlashAnalyzer):
        super().__init__(analyzer, FrameNeed())  # every frame, whatever the stride: a clip applies it

    def for_clip(self, clip: dict):
        times, luma = self.live.times, self.live.luma
        chosen = pick_frames(times, clip, self.analyzer.need)
        if not chosen:
            return None
        return Record(columns=self.analyzer.summarize([luma[i] for i in chosen], [times[i] for i in chosen]))
