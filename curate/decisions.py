"""Keep or drop, derived from stored scores and the thresholds at export time.

Every threshold is a `Check`: a polars expression over stored columns that is true where a clip
fails, and one that says why. Export, calibration and retention previews evaluate all checks over
a whole table in one pass; a clip's `reason` lists every check it fails. Nothing here runs a
model: changing a threshold and exporting again is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str  # the analyzer or rule, e.g. "flash"
    columns: tuple[str, ...]  # stored columns it reads; a table without them skips the check
    fails: Any  # pl.Expr, true where the clip fails (null = not measured = passes)
    reason: Any  # pl.Expr, the reason text where it fails
    limit: float | None = None  # the threshold on columns[0], for calibration plots (None: not one number)
    key: str | None = None  # the config key that holds it
    fails_when: str | None = None  # "above" or "below" the limit


def _fmt(value: float) -> str:
    return f"{value:g}"


def above(name: str, column: str, limit: float, key: str, digits: int = 3, label: str = "") -> Check:
    """Fails where `column` > `limit` (config key `key`)."""
    import polars as pl

    value = pl.col(column).round(digits).cast(pl.Utf8)
    text = pl.format(f"{name}: {label}{column} {{}} > {key} {_fmt(limit)}", value)
    return Check(name, (column,), pl.col(column) > limit, text, limit, key, "above")


def below(name: str, column: str, limit: float, key: str, digits: int = 3, label: str = "") -> Check:
    """Fails where `column` < `limit` (config key `key`)."""
    import polars as pl

    value = pl.col(column).round(digits).cast(pl.Utf8)
    text = pl.format(f"{name}: {label}{column} {{}} < {key} {_fmt(limit)}", value)
    return Check(name, (column,), pl.col(column) < limit, text, limit, key, "below")


def run_checks(config, until: str | None = None) -> list[Check]:
    """Every check of every enabled stage of this config (only the stages before `until`)."""
    from stages import STAGES

    checks: list[Check] = []
    for name, spec in STAGES.items():
        if name == until:
            break
        section = config.stage_section(name)
        if section.enabled:
            checks += spec.load().threshold_checks(section)
    return checks


def failing_reasons(checks: list[Check], columns) -> Any:
    """pl.Expr: the list of reasons of the checks a row fails (empty when it passes them all)."""
    import polars as pl

    usable = [c for c in checks if all(col in columns for col in c.columns)]
    if not usable:
        return pl.lit([], dtype=pl.List(pl.Utf8))
    parts = [pl.when(c.fails.fill_null(False)).then(c.reason).otherwise(pl.lit(None, dtype=pl.Utf8))
             for c in usable]
    return pl.concat_list(parts).list.drop_nulls()


def first_failure(checks: list[Check], row: dict) -> str | None:
    """For one clip's scores (the cascade): the reason of the first failing check, or None."""
    import polars as pl

    if not checks:
        return None
    table = pl.DataFrame([row])
    reasons = table.select(failing_reasons(checks, table.columns).alias("r"))["r"][0]
    return reasons[0] if reasons is not None and len(reasons) else None


def apply_decisions(table, config):
    """Clips that fail any check become status `filtered` with every reason; `keep` marks the rest."""
    import polars as pl

    if "clip_id" not in table.columns:  # nothing got as far as clips
        return table.with_columns(keep=pl.lit(False))
    reasons = failing_reasons(run_checks(config), table.columns)
    candidate = (pl.col("status") == "ok") & pl.col("clip_id").is_not_null()
    rejected = candidate & (reasons.list.len() > 0)
    table = table.with_columns(
        status=pl.when(rejected).then(pl.lit("filtered")).otherwise(pl.col("status")),
        reason=pl.when(rejected).then(reasons.list.join("; ")).otherwise(pl.col("reason")),
    )
    return table.with_columns(keep=(pl.col("status") == "ok") & pl.col("clip_id").is_not_null())
