"""Probe a file into the facts the later stages need, or a reason it cannot be used.

A file PyAV opens and decodes a first frame of is read in this process (~5 ms); any other goes through
ffprobe (~130 ms, a process and its libraries per file), whose own words then give the reason."""

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
    found = _probe_pyav(path)
    if found is not None:
        return _facts(*found)
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
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    duration = float(video.get("duration") or (info.get("format") or {}).get("duration") or 0)
    return _facts(int(video.get("width") or 0), int(video.get("height") or 0), _rotation(video), fps, duration,
                  int(video.get("nb_frames") or 0), video.get("codec_name", ""), has_audio)


def _probe_pyav(path: Path) -> tuple | None:
    """What ffprobe would say of a plain, readable video, or None for anything else (no video stream,
    an error, no first frame): ffprobe then decides and words the reason."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            video = next((s for s in container.streams.video
                          if not s.disposition & av.stream.Disposition.attached_pic), None)
            if video is None:
                return None
            # The display matrix rides on the frames; ffprobe reads the same one from the stream.
            first = next(container.decode(video), None)
            if first is None:
                return None
            fps = float(video.average_rate or 0) or float(video.base_rate or 0)
            if video.duration is not None and video.time_base is not None:
                duration = float(video.duration * video.time_base)
            else:
                duration = (container.duration or 0) / 1_000_000  # AV_TIME_BASE
            # else an old-style `rotate` tag, read as from ffprobe's stream (a bad one: ffprobe decides)
            rotation = int(round(first.rotation)) % 360 if first.rotation else _rotation({"tags": video.metadata})
            return (video.width, video.height, rotation, fps, duration, int(video.frames or 0),
                    video.codec_context.codec.canonical_name, bool(container.streams.audio))
    except (av.error.FFmpegError, OSError, ValueError, StopIteration):
        return None


def _facts(width: int, height: int, rotation: int, fps: float, duration: float, nb_frames: int, codec: str,
           has_audio: bool) -> tuple[dict, str | None]:
    if width <= 0 or height <= 0:
        return {}, "video stream has no frame size"
    if rotation in (90, 270):
        width, height = height, width  # what a viewer sees
    num_frames = nb_frames or int(round(duration * fps))
    facts = {"width": width, "height": height, "fps": round(fps, 4), "duration_s": round(duration, 4),
             "num_frames": num_frames, "codec": codec, "rotation": rotation, "has_audio": has_audio}
    if fps <= 0 or duration <= 0:
        return facts, "video has no duration or frame rate"
    return facts, None
