"""The analyzer shape: a consumer of the decode loop that returns columns per clip.

`need` says which frames (rate, size, colour); the decode loop (stages/decode.py) hands each
analyzer exactly those. `begin` starts a clip, `feed` gets its frames, `end` returns the clip's
columns. The measuring engine (stages/measure.py) takes each clip's `Record` instead (from
split's decode, or `live_record` after a decode here) and turns many clips' records into columns
at once with `measure`: model analyzers batch their inference across clips there, and a cascade
can skip them for clips that a cheaper analyzer already rejected. `threshold_checks` turns the
analyzer's thresholds into decision expressions over the stored columns (curate.decisions).

An analyzer module holds its config model (`Config`) and its class; it imports numpy, polars
and model packages only inside methods, so building the config stays light.
"""

from __future__ import annotations

from typing import Any, ClassVar

from curate.sections import Section

from ..handoff import Record
from ..pixels import Frame
from ..sampling import FrameNeed


class Analyzer:
    name: ClassVar[str] = ""
    section: ClassVar[str] = "filter"  # the config section holding this analyzer's sub-section
    cost: ClassVar[int] = 0  # cascade order: cheapest first
    columns: ClassVar[dict[str, str]] = {}  # polars dtype names of what `end` returns
    Config: ClassVar[type[Section]]

    def __init__(self, cfg):
        self.cfg = cfg
        self.need: FrameNeed = FrameNeed()

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def preflight(self) -> None:
        """Load models / verify packages: raise CurateError before any work."""

    def models(self, enabled: bool) -> list:
        """The models this analyzer loads (curate.plugin.ModelEntry), for `curate models`."""
        return []

    def devices(self) -> list[str]:
        """The devices its models run on (a task's GPUs are derived from these)."""
        device = getattr(self.cfg, "device", None)
        return [device] if device else []

    def begin(self, clip: dict) -> None:
        raise NotImplementedError

    def feed(self, frame: Frame) -> None:
        raise NotImplementedError

    def end(self) -> dict[str, Any]:
        raise NotImplementedError

    def live_record(self) -> Record:
        """The clip just fed, as the engine's Record."""
        return Record(columns=self.end())

    def recorder(self, grid_s: float):
        """A consumer for split's decode whose `for_clip(clip)` gives this analyzer's Record of a
        clip (stages/handoff.py), so the filter stage need not decode; None: it decodes there."""
        return None

    def unpacked(self, record: Record) -> Record:
        return record

    def measure(self, records: list[Record]) -> list[dict[str, Any]]:
        """Each clip's columns from its Record."""
        return [record.columns for record in records]

    def threshold_checks(self) -> list:
        """The thresholds of this analyzer as curate.decisions.Check expressions (none: record only)."""
        return []
