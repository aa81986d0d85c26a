"""Clip scorers of the score stage: the one registry.

Each scorer is one module holding its config model and its class (shape in base.py); adding one
is that module plus one line here (and config.example.yaml). `classifier` is configured as a list
(`score.classifiers`), every other scorer as its own `score.<name>` section.
"""

from __future__ import annotations

from stages import load_target

SCORERS: dict[str, str] = {
    "quality": "stages.scorers.quality:QualityScorer",
    "laion_aes": "stages.scorers.laion_aes:LaionAesScorer",
    "dover": "stages.scorers.dover:DoverScorer",
    "unimatch": "stages.scorers.unimatch:UnimatchScorer",
}
CLASSIFIER = "stages.scorers.classifier:ClassifierScorer"


def scorer_classes() -> dict:
    return {name: load_target(target) for name, target in SCORERS.items()}


def build_scorers(cfg, enabled_only: bool = True) -> list:
    """The scorers of a score config (cheapest first), the enabled ones unless told otherwise."""
    found = [cls(getattr(cfg, name)) for name, cls in scorer_classes().items()
             if getattr(cfg, name).enabled or not enabled_only]
    classifier = load_target(CLASSIFIER)
    found += [classifier(entry, n) for n, entry in enumerate(cfg.classifiers) if entry.enabled or not enabled_only]
    return sorted(found, key=lambda s: s.cost)
