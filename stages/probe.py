"""ffprobe a file into the facts the later stages need, or a reason it cannot be used."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

from curate.errors import CurateError


def require_ffmpeg() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise CurateError(f"{tool} is not on PATH; install FFmpeg (e.g. `apt-get install ffmpeg`)")


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    rotate = (stream.get("tags") or {}).get("rotate")
    return int(rotate) % 360 if rotate else 0


def probe(path: Path) -> tuple[dict, str | None]:
    """Return (facts, None) for a usable video, or ({}, reason) for one that is not."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return {}, f"cannot read file: {exc.strerror}"
    if size == 0:
        return {}, "empty file (0 bytes)"
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        # ffprobe prefixes messages with the path; keep only what it says about the file.
        detail = detail.replace(str(path) + ": ", "")
        return {}, f"not a readable media file: {detail}"
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    if video is None:
        return {}, "no video stream (audio only)" if has_audio else "no video stream"
    rotation = _rotation(video)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        return {}, "video stream has no frame size"
    if rotation in (90, 270):
        width, height = height, width  # what a viewer sees
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    duration = float(video.get("duration") or (info.get("format") or {}).get("duration") or 0)
    num_frames = int(video.get("nb_frames") or 0) or int(round(duration * fps))
    facts = {"width": width, "height": height, "fps": round(fps, 4), "duration_s": round(duration, 4),
             "num_frames": num_frames, "codec": video.get("codec_name", ""), "rotation": rotation,
             "has_audio": has_audio}
    if fps <= 0 or duration <= 0:
        return facts, "video has no duration or frame rate"
    return facts, None
