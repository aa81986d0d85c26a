"""Clip analyzers fed from one decode. Each is one small class of the shape in base.py."""

from __future__ import annotations

from .base import Analyzer


def build_analyzers(cfg) -> list[Analyzer]:
    """The enabled analyzers of the filter config, cheapest first (the cascade order)."""
    from .flash import FlashAnalyzer
    from .motion import MotionAnalyzer
    from .nsfw import NsfwAnalyzer
    from .ocr import OcrAnalyzer

    found = [cls(getattr(cfg, cls.name)) for cls in (FlashAnalyzer, MotionAnalyzer, OcrAnalyzer, NsfwAnalyzer)
             if getattr(cfg, cls.name).enabled]
    return sorted(found, key=lambda a: a.cost)


def all_columns() -> dict:
    from .flash import FlashAnalyzer
    from .motion import MotionAnalyzer
    from .nsfw import NsfwAnalyzer
    from .ocr import OcrAnalyzer

    columns = {}
    for cls in (FlashAnalyzer, MotionAnalyzer, OcrAnalyzer, NsfwAnalyzer):
        columns.update(cls.columns)
    return columns
