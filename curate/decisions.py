"""Keep or drop, derived from stored scores and the thresholds at export time.

Nothing here runs a model: changing a threshold and exporting again is enough.
"""

from __future__ import annotations


def basic_rejects(clip: dict, cfg) -> str | None:
    """Checks that need no decode: duration and resolution."""
    duration = clip.get("clip_duration_s")
    if cfg.min_duration_s is not None and duration is not None and duration < cfg.min_duration_s:
        return f"duration: {duration:.2f} s < min_duration_s {cfg.min_duration_s:g}"
    if cfg.max_duration_s is not None and duration is not None and duration > cfg.max_duration_s:
        return f"duration: {duration:.2f} s > max_duration_s {cfg.max_duration_s:g}"
    short = min(clip.get("width") or 0, clip.get("height") or 0)
    if cfg.min_short_side is not None and short < cfg.min_short_side:
        return f"resolution: short side {short} px < min_short_side {cfg.min_short_side}"
    return None


def clip_reason(clip: dict, cfg, analyzers) -> str | None:
    """The first filter (cheapest first) that rejects this clip, or None to keep it."""
    reason = basic_rejects(clip, cfg)
    if reason:
        return reason
    for analyzer in analyzers:
        if all(clip.get(col) is not None for col in analyzer.columns if col != "text"):
            reason = analyzer.rejects({col: clip.get(col) for col in analyzer.columns})
            if reason:
                return reason
    return None


def apply_decisions(table, config):
    """Clips that fail a threshold become status `filtered` with the reason; `keep` marks the rest."""
    import polars as pl

    if "clip_id" not in table.columns:  # nothing got as far as clips
        return table.with_columns(keep=pl.lit(False))
    from stages.analyzers import build_analyzers

    analyzers = build_analyzers(config.filter) if config.filter.enabled else []
    statuses, reasons = [], []
    for row in table.iter_rows(named=True):
        status, reason = row["status"], row["reason"]
        if status == "ok" and row.get("clip_id"):
            why = clip_reason(row, config.filter, analyzers)
            if why:
                status, reason = "filtered", why
        statuses.append(status)
        reasons.append(reason)
    return table.with_columns(status=pl.Series(statuses, dtype=pl.Utf8), reason=pl.Series(reasons, dtype=pl.Utf8),
                              keep=pl.Series([s == "ok" for s in statuses]) & pl.col("clip_id").is_not_null())
