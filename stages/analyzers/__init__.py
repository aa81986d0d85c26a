"""Clip analyzers fed from one decode: the one registry of the filter stage's analyzers.

Each analyzer is one module holding its config model and its class (shape in base.py); adding
one is that module plus one line here (and config.example.yaml). Registry order is the order of
the `filter:` sub-sections; the cascade runs them cheapest first.
"""

from __future__ import annotations

from stages import load_target

ANALYZERS: dict[str, str] = {
    "flash": "stages.analyzers.flash:FlashAnalyzer",
    "motion": "stages.analyzers.motion:MotionAnalyzer",
    "ocr": "stages.analyzers.ocr:OcrAnalyzer",
    "nsfw": "stages.analyzers.nsfw:NsfwAnalyzer",
}


def analyzer_classes() -> dict:
    return {name: load_target(target) for name, target in ANALYZERS.items()}


def build_analyzers(cfg, enabled_only: bool = True) -> list:
    """The analyzers of the filter config, cheapest first (the cascade order), the enabled ones
    unless told otherwise."""
    found = [cls(getattr(cfg, name)) for name, cls in analyzer_classes().items()
             if getattr(cfg, name).enabled or not enabled_only]
    return sorted(found, key=lambda a: a.cost)
