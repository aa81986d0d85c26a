"""The analyzer shape: a consumer of the decode loop that returns columns per clip.

`need` says which frames (rate, size, colour); the decode loop (stages/decode.py) hands each
analyzer exactly those. `begin` starts a clip, `feed` gets its frames, `end` returns the clip's
columns. Expensive analyzers keep their few sampled images and infer in `end`, so a cascade
can skip them for clips that a cheaper analyzer already rejected. `checks` turns the analyzer's
thresholds into decision expressions over the stored columns (curate.decisions).

An analyzer module holds its config model (`Config`) and its class; it imports numpy, polars
and model packages only inside methods, so building the config stays light.
"""

from __future__ import annotations

from typing import Any, ClassVar

from curate.sections import Section

from ..decode import Frame, FrameNeed


class Analyzer:
    name: ClassVar[str] = ""
    cost: ClassVar[int] = 0  # cascade order: cheapest first
    columns: ClassVar[dict[str, str]] = {}  # polars dtype names of what `end` returns
    Config: ClassVar[type[Section]]

    def __init__(self, cfg):
        self.cfg = cfg
        self.need: FrameNeed = FrameNeed()

    def preflight(self) -> None:
        """Load models / verify packages: raise CurateError before any work."""

    def begin(self, clip: dict) -> None:
        raise NotImplementedError

    def feed(self, frame: Frame) -> None:
        raise NotImplementedError

    def end(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def key(self) -> str:
        return f"filter.{self.name}"

    def recorder(self, grid_s: float):
        """A consumer for split's decode whose `for_clip(clip)` gives this analyzer's Record of a
        clip (stages/handoff.py), so the filter stage need not decode; None: it decodes there."""
        return None

    def from_records(self, records: list) -> list[dict[str, Any]]:
        """Each clip's columns from the Record split made of it (instead of begin/feed/end)."""
        return [record.columns for record in records]

    def threshold_checks(self) -> list:
        """The thresholds of this analyzer as curate.decisions.Check expressions (none: record only)."""
        return []
