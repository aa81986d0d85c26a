"""The final table: a row per clip plus a row per input video that gave no clip.

Indices that have not finished the last stage are not left out silently: their manifest
units appear as `incomplete` rows naming the stage where they stopped and why.
"""

from __future__ import annotations

from pathlib import Path

from .faults import storage_errors
from .manifest import read_manifest_part
from .plan import Plan
from .rundir import RunDir, atomic_write_bytes, atomic_write_parquet, read_json
from .status import collect_status

FORMATS = ("parquet", "jsonl")


def final_table(run: RunDir, plan: Plan):
    import polars as pl

    last = plan.stages[-1]
    status = collect_status(run, plan)
    frames = [pl.read_parquet(run.stage_part(last, i)).with_columns(part=pl.lit(i, dtype=pl.Int64))
              for i in sorted(status[last].done)]
    missing = []
    manifest = read_json(run.manifest_info)
    for index in range(plan.num_parts):
        if index in status[last].done:
            continue
        stopped, why = next(((s, st.failed.get(index) or ("blocked" if index in st.blocked else "not finished"))
                             for s, st in status.items() if index not in st.done), (last, "not finished"))
        reason = f"index {index} stopped at {stopped}: {why}"
        try:
            units = read_manifest_part(run, index, manifest).select("video_id", "source", "relpath", "bytes")
        except Exception as exc:  # the index's own input is what broke: one row says so
            units = pl.DataFrame({"video_id": [None], "source": [str(run.manifest_part(index))], "relpath": [None],
                                  "bytes": [None]}, schema={"video_id": pl.Utf8, "source": pl.Utf8,
                                                            "relpath": pl.Utf8, "bytes": pl.Int64})
            reason += f"; its manifest part is unreadable ({type(exc).__name__})"
        missing.append(units.with_columns(part=pl.lit(index, dtype=pl.Int64), status=pl.lit("incomplete"),
                                          reason=pl.lit(reason)))
    table = pl.concat(frames + missing, how="diagonal_relaxed") if frames or missing else pl.DataFrame()
    if "clip_id" in table.columns:
        table = table.sort(["video_id", "clip_id"], nulls_last=True)
    from .decisions import apply_decisions

    return apply_decisions(table, plan.config), len(missing)


def export(run: RunDir, plan: Plan, fmt: str = "parquet", out: Path | None = None,
           progress=None) -> tuple[Path, object, int]:
    table, incomplete = final_table(run, plan)
    out = out or run.metadata / f"clips.{fmt}"
    with storage_errors(out):  # a full or read-only disk: say so, and that nothing before export is lost
        if plan.config.clips.enabled and "keep" in table.columns:
            from .materialize import materialize

            table = materialize(run, table, plan.config.clips, progress)
        if fmt == "jsonl":
            atomic_write_bytes(out, table.write_ndjson().encode())
        else:
            atomic_write_parquet(out, table)
    return out, table, incomplete


def summary(table) -> dict:
    import polars as pl

    if table.is_empty():
        return {"rows": 0}
    clips = table.filter(pl.col("clip_id").is_not_null()) if "clip_id" in table.columns else table.head(0)
    kept = clips.filter(pl.col("status") == "ok")
    by_status = {r["status"]: r["len"] for r in table.group_by("status").len().sort("status").to_dicts()}
    return {
        "rows": table.height,
        "videos": table["video_id"].n_unique(),
        "clips_ok": kept.height,
        "clip_hours": round(float(kept["clip_duration_s"].sum() or 0) / 3600, 4) if kept.height else 0.0,
        "by_status": by_status,
    }


def reason_counts(table) -> dict[str, int]:
    """Rows not kept, by the first word of their reason (flash, ocr, failed, ...)."""
    import polars as pl

    if table.is_empty() or "reason" not in table.columns:
        return {}
    dropped = table.filter(~pl.col("keep").fill_null(False)) if "keep" in table.columns else table
    keys = dropped.select(pl.concat_str([pl.col("status"), pl.col("reason").fill_null("").str.extract(
        r"^([a-z_ ]+?)(?::|$)", 1).fill_null("")], separator=": ").str.strip_chars(": ").alias("why"))
    return {r["why"]: r["len"] for r in keys.group_by("why").len().sort("len", descending=True).to_dicts()}
