"""The published tree, the one shape that export --output-dir, offline-filter and upload write:

    README.md                     dataset card (Hub YAML header: configs, licence, tags)
    metadata.parquet              files format: one row per kept clip, `file_name` relative to the root
    data/[<bucket>/]<input path>[/<clip id>].mp4        files format: the kept clips
    data/[<bucket>/]<part>-NNNNNN.tar, shards.json (wids index)     webdataset format
    curation/<part>.parquet       every row of the run (kept or not, status, reason): its own config

`load_dataset("videofolder", data_dir=root)` joins metadata.parquet (it reads no other table:
one metadata format per tree) and ignores curation/; on the Hub the card's `configs` name the
same files. No published table holds an absolute local path: `path` and `clip_path` are left
out and every local root is cut off the strings that mention it (reasons, sources).
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath

DATA = "data"
CURATION = "curation"
METADATA = "metadata.parquet"
SHARD_INDEX = "shards.json"  # wids index: every shard with its sample count
LOCAL_ONLY = ("path", "clip_path")  # what only means something on the machine that made it
NOT_IN_DATASET = ("status", "reason", "keep", "upload_error", "part")  # every dataset row is ok


def local_roots(table, extra: list[str] = ()) -> list[str]:
    """Local directories the table's strings may mention: each input's root (path minus relpath)."""
    roots = {str(r).rstrip("/") for r in extra if r}
    if "path" in table.columns and "relpath" in table.columns:
        for path, rel in table.select("path", "relpath").unique().iter_rows():
            if path and rel and "::" not in rel and str(path).endswith(rel):
                roots.add(str(path)[: -len(rel)].rstrip("/"))
            if path and str(path).startswith("/"):
                roots.add(str(PurePosixPath(path).parent))
    return sorted((r for r in roots if r and r != "/"), key=len, reverse=True)


def published(table, roots: list[str]):
    """The table as it may leave this machine: no local-only column, no absolute local path in a string."""
    import polars as pl

    out = table.drop([c for c in LOCAL_ONLY if c in table.columns])
    exprs = []
    for name, dtype in out.schema.items():
        if dtype == pl.Null:  # every part's table has the same types, so datasets can join them
            exprs.append(pl.col(name).cast(pl.Utf8))
        elif dtype == pl.Utf8 and roots:
            expr = pl.col(name)
            for root in roots:
                expr = expr.str.replace_all(root + "/", "", literal=True).str.replace_all(root, ".", literal=True)
            exprs.append(expr)
    return out.with_columns(exprs) if exprs else out


def dataset_rows(curation, fmt: str = "files"):
    """The rows a trainer gets: the kept clips that have a file (files) or a shard member (webdataset)."""
    import polars as pl

    if curation.is_empty() or "status" not in curation.columns:
        return curation.head(0)
    has = "key" if fmt == "webdataset" else "file_name"
    if has not in curation.columns:
        return curation.head(0)
    rows = curation.filter((pl.col("status") == "ok") & pl.col(has).is_not_null())
    return rows.drop([c for c in NOT_IN_DATASET if c in rows.columns])


# -- buckets -------------------------------------------------------------------------------------------
def aspect_value(text: str) -> float:
    w, _, h = str(text).partition(":")
    return float(w) / float(h)


def bucket_of(width: int, height: int, frames: int, buckets) -> str:
    """The training bucket of a clip: the largest resolution (short side) and length in frames it
    reaches, and the nearest aspect ratio; `unbucketed` when it is below the smallest of either."""
    if not (width and height and frames):
        return "unbucketed"
    short = min(width, height)
    res = max((r for r in buckets.resolutions if r <= short), default=None)
    length = max((f for f in buckets.frames if f <= frames), default=None)
    if res is None or length is None:
        return "unbucketed"
    aspect = min(buckets.aspects, key=lambda a: abs(math.log(width / height) - math.log(aspect_value(a))))
    return f"{res}p_{aspect.replace(':', 'x')}_{length}f"


def data_path(rel: str, bucket: str | None) -> str:
    return f"{DATA}/{bucket}/{rel}" if bucket else f"{DATA}/{rel}"


def root_files(curation, config, fmt: str, fingerprint: str | None, license_id: str, scratch) -> list:
    """The files at the root of a published tree, written under `scratch`: (relative name, local path)."""
    import json
    from pathlib import Path

    from . import wds
    from .card import card_text

    scratch = Path(scratch)
    rows = dataset_rows(curation, fmt)
    out, shards = [], None
    if fmt == "webdataset":
        counts = rows.group_by("shard").len().sort("shard").iter_rows() if rows.height else []
        shards = [{"url": name, "nsamples": n} for name, n in counts]
        (scratch / SHARD_INDEX).write_text(json.dumps(wds.shard_index(shards), indent=1) + "\n")
        out.append((SHARD_INDEX, scratch / SHARD_INDEX))
    else:
        rows.write_parquet(scratch / METADATA)
        out.append((METADATA, scratch / METADATA))
    (scratch / "README.md").write_text(card_text(curation, config, fmt=fmt, fingerprint=fingerprint,
                                                 license_id=license_id, shards=shards))
    out.append(("README.md", scratch / "README.md"))
    return out
