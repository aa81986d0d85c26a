"""Writing one clip of a video to its own file with ffmpeg: split (`split.cut`), export and
upload all cut clips this one way; and reading back what a written clip holds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

# the audio codec a re-encoded clip gets, by container (mp4 takes AAC, webm takes Opus)
AUDIO_CODEC = {"libvpx-vp9": ["-c:a", "libopus", "-b:a", "96k"]}
AAC = ["-c:a", "aac", "-b:a", "128k"]


def cut_clip(src: str, dest: Path, start_s: float, duration_s: float, mode: str, crf: int,
             vf: str | None = None, codec: str = "libx264", preset: str = "veryfast", audio: str = "drop") -> None:
    """Write one clip with ffmpeg: `reencode` is frame-accurate, `copy` starts at a keyframe.

    audio `keep` keeps the first audio stream (re-encoded to AAC, or Opus in webm, when the
    video is re-encoded; copied when it is copied), `drop` writes video only."""
    tmp = dest.with_name(f".{dest.name}.tmp{dest.suffix}")
    streams = ["-map", "0:v:0"] + (["-map", "0:a:0?"] if audio == "keep" else [])
    if mode == "copy":
        encode = ["-c", "copy"] + ([] if audio == "keep" else ["-an"])
    else:
        encode = ["-c:v", codec, "-crf", str(crf), "-pix_fmt", "yuv420p"]
        encode += AUDIO_CODEC.get(codec, AAC) if audio == "keep" else ["-an"]
        if codec in ("libx264", "libx265"):
            encode += ["-preset", preset]
        if vf:
            encode = ["-vf", vf] + encode
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-ss", f"{start_s:.4f}", "-i", src,
           "-t", f"{duration_s:.4f}", *streams, *encode, str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError((proc.stderr.strip().splitlines() or ["ffmpeg failed"])[-1])
    tmp.replace(dest)


def clip_facts(path: Path) -> dict:
    """What a written clip file holds: its frame size, frame rate, frame count and whether it has audio."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format",
                           str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"ffprobe {path.name}: " + (proc.stderr.strip().splitlines() or ["failed"])[-1])
    doc = json.loads(proc.stdout or "{}")
    streams = doc.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), {})
    num, _, den = str(video.get("avg_frame_rate") or "0/1").partition("/")
    fps = float(num) / float(den or 1) if float(den or 1) else 0.0
    frames = int(video["nb_frames"]) if str(video.get("nb_frames", "")).isdigit() else None
    if frames is None:  # webm and some streams do not say: duration x rate
        duration = float(video.get("duration") or doc.get("format", {}).get("duration") or 0)
        frames = round(duration * fps)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    rotation = _rotation(video)
    if rotation in (90, 270):  # what a player (and a decoder honouring the flag) shows
        width, height = height, width
    return {"clip_width": width, "clip_height": height, "clip_fps": round(fps, 4), "clip_num_frames": frames,
            "has_audio": any(s.get("codec_type") == "audio" for s in streams)}


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return abs(int(float(side["rotation"]))) % 360
    return abs(int(float((stream.get("tags") or {}).get("rotate", 0)))) % 360
