"""Stage plug-ins: the one registry of stages, in pipeline order.

Each stage lives in its own module with its config model and its `Stage` class (see
stages/base.py). Adding a stage is that module plus one line here (and config.example.yaml).
Stage modules import only light modules at the top, so building the config or listing stages
never pulls in polars, numpy or a model library.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


def load_target(target: str):
    """'package.module:Name' -> the object."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str  # the module that holds both classes below
    stage_class: str
    config_class: str
    version: int  # bump when a stage's output changes for the same config: redoes it everywhere
    help: str

    def load(self):
        return load_target(f"{self.module}:{self.stage_class}")

    def config_model(self):
        return load_target(f"{self.module}:{self.config_class}")


# Pipeline order.
STAGES: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("fetch", "stages.fetch", "FetchStage", "FetchConfig", 1,
              "list local videos or extract archive shards safely; probe each video"),
    StageSpec("split", "stages.split", "SplitStage", "SplitConfig", 1,
              "detect shots and cut them into clips of min_s to max_s seconds"),
    StageSpec("filter", "stages.filter", "FilterStage", "FilterConfig", 1,
              "flash, motion, OCR text area and NSFW scores per clip, over one decode"),
    StageSpec("score", "stages.score", "ScoreStage", "ScoreConfig", 1,
              "quality, aesthetic and classifier scores of the kept clips, on CPU or GPU"),
    StageSpec("dedup", "stages.dedup", "DedupStage", "DedupConfig", 1,
              "exact and near-duplicate clips across the whole run and against earlier releases (run-wide)"),
    StageSpec("caption", "stages.caption", "CaptionStage", "CaptionConfig", 1,
              "captions of the kept clips from an OpenAI-compatible or upload API, resumable"),
    StageSpec("upload", "stages.upload", "UploadStage", "UploadConfig", 1,
              "kept clips and metadata to a new HF dataset (or a directory), in resumable commits"),
)}
STAGE_ORDER = tuple(STAGES)
