"""Signature tables: one per index beside the dedup parts, one per run in metadata/, and the
tables of earlier releases that `dedup.against` names.

A table holds one row per clip: its id, the sha256 of the file it was cut from, its time range,
what choosing the clip to keep reads (quality, pixels, duration), its frame hashes and their times
from the clip's start. metadata/signatures.parquet adds the status dedup gave each clip; an earlier
release's table is read for its `ok` rows (the clips that release kept).
"""

from __future__ import annotations

from pathlib import Path

from curate.errors import CurateError

SCHEMA = {
    "clip_id": "Utf8", "video_id": "Utf8", "file_sha256": "Utf8", "start_s": "Float64", "end_s": "Float64",
    "duration_s": "Float64", "pixels": "Int64", "quality": "Float64",
    "hashes": ("List", "UInt64"), "times": ("List", "Float32"),
    "embedding": "Binary",  # the clip's CLIP embedding (float16 bytes) when score.laion_aes ran
}
REQUIRED = ("clip_id", "hashes", "times")


def dtypes() -> dict:
    import polars as pl

    return {k: pl.List(getattr(pl, v[1])) if isinstance(v, tuple) else getattr(pl, v) for k, v in SCHEMA.items()}


def frame(rows: list[dict]):
    import polars as pl

    return pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in rows], schema=dtypes())


def part_path(run, index: int) -> Path:
    return run.stage_part("dedup", index).with_suffix(".signatures.parquet")


def run_table_path(run) -> Path:
    return run.metadata / "signatures.parquet"


def fetch_hashes_path(run, index: int) -> Path:
    """Where fetch keeps the sha256 of every file of one index."""
    return run.stage_part("fetch", index).with_suffix(".hashes.parquet")


def release_name(source: str) -> str:
    """How `duplicate_of` names an earlier release: its hub repo, or its directory."""
    if source.startswith("hf://"):
        return source[len("hf://"):].removeprefix("datasets/").split("/metadata/")[0]
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve().name
    return (path.parent.parent.name if path.parent.name == "metadata" else path.parent.name) or path.stem


def resolve(source: str) -> Path:
    """A local path to the table: hf://[datasets/]owner/name[/path.parquet] goes through the HF cache."""
    if not source.startswith("hf://"):
        path = Path(source).expanduser()
        if path.is_dir():
            path = (path / "metadata" if (path / "metadata").is_dir() else path) / "signatures.parquet"
        if not path.is_file():
            raise CurateError(f"dedup.against: {source}: no such signatures table (give the signatures.parquet of "
                              "an earlier run, its run directory, or hf://owner/name)")
        return path
    from huggingface_hub import hf_hub_download

    rest = source[len("hf://"):].removeprefix("datasets/")
    parts = rest.split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or "metadata/signatures.parquet"
    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset"))
    except Exception as exc:
        raise CurateError(f"dedup.against: {source}: cannot get {filename} of dataset {repo}: "
                          f"{type(exc).__name__}: {exc}") from None


def read_release(source: str):
    """The kept clips of an earlier release's table, checked."""
    import polars as pl

    path = resolve(source)
    try:
        table = pl.read_parquet(path)
    except Exception as exc:
        raise CurateError(f"dedup.against: {source}: {path} is not a readable Parquet table ({exc})") from None
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise CurateError(f"dedup.against: {source}: {path} has no column {', '.join(missing)}; it is not a curate "
                          "signatures table (metadata/signatures.parquet of a run)")
    if "status" in table.columns:
        table = table.filter(pl.col("status") == "ok")
    for name, dtype in dtypes().items():
        if name not in table.columns:
            table = table.with_columns(pl.lit(None, dtype=dtype).alias(name))
    return table.select(list(SCHEMA)).cast(dtypes())
