"""The analyzer shape: declare frames, take them one by one per clip, return columns per clip.

`need` says which frames (rate, size, colour); the filter stage's decode pass hands each
analyzer exactly those. `begin` starts a clip, `feed` gets its frames, `end` returns the clip's
columns. Expensive analyzers keep their few sampled images and infer in `end`, so a cascade
can skip them for clips that a cheaper analyzer already rejected.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..decode import Frame, FrameNeed


class Analyzer:
    name: ClassVar[str] = ""
    cost: ClassVar[int] = 0  # cascade order: cheapest first
    columns: ClassVar[dict[str, Any]] = {}  # polars dtypes of what `end` returns

    def __init__(self, cfg):
        self.cfg = cfg
        self.need: FrameNeed = FrameNeed()

    def check(self) -> None:
        """Load models / verify packages: raise CurateError before any work."""

    def begin(self, clip: dict) -> None:
        raise NotImplementedError

    def feed(self, frame: Frame) -> None:
        raise NotImplementedError

    def end(self) -> dict[str, Any]:
        raise NotImplementedError

    def rejects(self, result: dict[str, Any]) -> str | None:
        """Why this clip fails this analyzer's threshold (None if it passes or is record-only)."""
        return None
