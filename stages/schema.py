"""Column schema shared by every stage part and the final table.

A row is either a clip (clip_id set) or a video that gave no clip (clip_id null); `status`
and `reason` say what happened to it. Later stages add their own columns to clip rows.
"""

from __future__ import annotations

import polars as pl

VIDEO_SCHEMA = {
    "video_id": pl.Utf8,
    "source": pl.Utf8,       # where it came from: a file, or "<shard>::<member>"
    "relpath": pl.Utf8,
    "path": pl.Utf8,         # the local file that is decoded
    "bytes": pl.Int64,
    "status": pl.Utf8,       # ok | failed | skipped | rejected | dropped
    "reason": pl.Utf8,
    "width": pl.Int64,
    "height": pl.Int64,
    "fps": pl.Float64,
    "duration_s": pl.Float64,
    "num_frames": pl.Int64,
    "codec": pl.Utf8,
    "rotation": pl.Int64,
    "has_audio": pl.Boolean,
}

CLIP_SCHEMA = {
    **VIDEO_SCHEMA,
    "decoded_frames": pl.Int64,  # frames the splitter decoded (< num_frames: truncated/corrupt)
    "flash_cuts_ignored": pl.Int64,  # detector cuts the flash guard took for flashes, not shot changes
    "clip_id": pl.Utf8,
    "start_frame": pl.Int64,
    "end_frame": pl.Int64,    # exclusive
    "start_s": pl.Float64,
    "end_s": pl.Float64,
    "clip_duration_s": pl.Float64,
    "boundary": pl.Utf8,      # what starts the clip: start | shot | window
    "clip_path": pl.Utf8,
}


def frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)
