"""Writing one clip of a video to its own file with ffmpeg: split (`split.cut`), export and
upload all cut clips this one way."""

from __future__ import annotations

import subprocess
from pathlib import Path


def cut_clip(src: str, dest: Path, start_s: float, duration_s: float, mode: str, crf: int,
             vf: str | None = None, codec: str = "libx264", preset: str = "veryfast") -> None:
    """Write one clip with ffmpeg: `reencode` is frame-accurate, `copy` starts at a keyframe."""
    tmp = dest.with_name(f".{dest.name}.tmp{dest.suffix}")
    if mode == "copy":
        encode = ["-c", "copy"]
    else:
        encode = ["-c:v", codec, "-crf", str(crf), "-pix_fmt", "yuv420p", "-an"]
        if codec in ("libx264", "libx265"):
            encode += ["-preset", preset]
        if vf:
            encode = ["-vf", vf] + encode
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", f"{start_s:.4f}", "-i", src,
           "-t", f"{duration_s:.4f}", *encode, str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError((proc.stderr.strip().splitlines() or ["ffmpeg failed"])[-1])
    tmp.replace(dest)
