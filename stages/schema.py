"""Column schema shared by every stage part and the final table.

A row is either a clip (clip_id set) or a video that gave no clip (clip_id null); `status`
and `reason` say what happened to it. Later stages add their own columns to clip rows.
Types are polars dtype names, so stage modules can declare columns without importing polars.
"""

from __future__ import annotations

VIDEO_SCHEMA = {
    "video_id": "Utf8",
    "source": "Utf8",       # where it came from: a file, or "<shard>::<member>"
    "relpath": "Utf8",
    "path": "Utf8",         # the local file that is decoded
    "bytes": "Int64",
    "status": "Utf8",       # ok | failed | skipped | rejected | dropped
    "reason": "Utf8",
    "width": "Int64",
    "height": "Int64",
    "fps": "Float64",
    "duration_s": "Float64",
    "num_frames": "Int64",
    "codec": "Utf8",
    "rotation": "Int64",
    "has_audio": "Boolean",
}

CLIP_SCHEMA = {
    **VIDEO_SCHEMA,
    "decoded_frames": "Int64",  # frames the splitter decoded (< num_frames: truncated/corrupt)
    "flash_cuts_ignored": "Int64",  # detector cuts the flash guard took for flashes, not shot changes
    "clip_id": "Utf8",
    "start_frame": "Int64",
    "end_frame": "Int64",    # exclusive
    "start_s": "Float64",
    "end_s": "Float64",
    "clip_duration_s": "Float64",
    "boundary": "Utf8",      # what starts the clip: start | shot | window | resume (after damage) |
                             # fade | dissolve (a dropped row holding a gradual transition's frames)
    "clip_path": "Utf8",
}


def dtypes(schema: dict) -> dict:
    """Column name -> polars dtype, for a schema of dtype names (or dtypes)."""
    import polars as pl

    return {name: getattr(pl, t) if isinstance(t, str) else t for name, t in schema.items()}


def frame(rows: list[dict], schema: dict):
    """A polars DataFrame of exactly these columns, in this order (missing values are null)."""
    import polars as pl

    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=dtypes(schema))
