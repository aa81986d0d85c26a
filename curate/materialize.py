"""Write clip files for the kept clips only, at export time (keep/drop is decided then).

A clip file is named by its clip id and the output settings, so a rerun skips clips already
written with the same settings and a change of settings writes new files.
"""

from __future__ import annotations

from .config import ClipsConfig
from .hashing import stable_hash
from .rundir import RunDir


def video_filter(cfg: ClipsConfig) -> str | None:
    """The ffmpeg -vf chain of the clip settings: resize (and crop or pad), then the frame-rate cap."""
    parts = [p for p in (scale_filter(cfg), f"fps='min({cfg.fps:g},source_fps)'" if cfg.fps else None) if p]
    return ",".join(parts) or None


def scale_filter(cfg: ClipsConfig) -> str | None:
    if cfg.resize == "none":
        return None
    if cfg.resize == "720p":  # short side 720, never upscaled, even dimensions
        return ("scale='if(gt(iw,ih),-2,min(720,iw))':'if(gt(iw,ih),min(720,ih),-2)',setsar=1")
    side = int(cfg.resize)
    if cfg.fit == "crop":
        return f"scale={side}:{side}:force_original_aspect_ratio=increase,crop={side}:{side},setsar=1"
    return f"scale={side}:{side}:force_original_aspect_ratio=decrease,pad={side}:{side}:(ow-iw)/2:(oh-ih)/2,setsar=1"


def materialize(run: RunDir, table, cfg: ClipsConfig, progress=None):
    """Cut every kept clip; returns the table with `clip_path` (and failures as `failed` rows)."""
    import polars as pl

    from .clipfile import cut_clip
    tag = stable_hash(cfg.model_dump())[:8]
    ext = ".webm" if cfg.codec == "libvpx-vp9" else ".mp4"
    paths, statuses, reasons = [], [], []
    rows = list(table.iter_rows(named=True))
    todo = sum(1 for r in rows if r.get("keep"))
    done = 0
    for row in rows:
        path, status, reason = row.get("clip_path"), row["status"], row["reason"]
        if row.get("keep"):
            dest = run.clips_dir(int(row["part"])) / f"{row['clip_id']}.{tag}{ext}"
            if not dest.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    cut_clip(row["path"], dest, row["start_s"], row["clip_duration_s"], cfg.mode, cfg.crf,
                             video_filter(cfg), cfg.codec, cfg.preset, audio=cfg.audio)
                except Exception as exc:
                    status, reason, dest = "failed", f"writing the clip failed: {exc}", None
            path = str(dest) if dest else None
            done += 1
            if progress:
                progress(done, todo)
        paths.append(path)
        statuses.append(status)
        reasons.append(reason)
    return table.with_columns(clip_path=pl.Series(paths, dtype=pl.Utf8), status=pl.Series(statuses, dtype=pl.Utf8),
                              reason=pl.Series(reasons, dtype=pl.Utf8),
                              keep=pl.Series([s == "ok" for s in statuses]) & pl.col("keep"))
