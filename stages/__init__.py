"""Stage plug-ins. Each stage is one class with a `run` method (see stages/base.py).

The registry names classes by import path so that listing stages or computing fingerprints
never imports a stage's heavy dependencies.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    name: str
    target: str  # "module:Class"
    version: int  # bump when a stage's output changes for the same config: redoes it everywhere
    help: str

    def load(self):
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


# Pipeline order. filter, score, caption and upload plug in here with the same shape.
STAGES: dict[str, StageSpec] = {
    "fetch": StageSpec("fetch", "stages.fetch:FetchStage", 1,
                       "list local videos or extract archive shards safely; probe each video"),
    "split": StageSpec("split", "stages.split:SplitStage", 1,
                       "detect shots and cut them into clips of [min_s, max_s] seconds"),
    "filter": StageSpec("filter", "stages.filter:FilterStage", 1,
                        "flash, motion, OCR text area and NSFW scores per clip, over one decode"),
}
STAGE_ORDER = tuple(STAGES)
