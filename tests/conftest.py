from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
DATA = Path(__file__).resolve().parent / "data"


def curate(*args: str, check: bool = True, env: dict | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user or a Slurm task would."""
    # A test run inside a Slurm allocation must not leak its job ids into the tasks it starts.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "curate", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"curate {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, capture_output=True)


def write_config(path: Path, text: str) -> Path:
    # Dedup is on by default, and the samples hold re-encodes of the same footage: a test's expected
    # counts assume no dedup unless its config names the section itself.
    if "dedup:" not in text:
        text = text + ("" if not text or text.endswith("\n") else "\n") + "dedup: {enabled: false}\n"
    path.write_text(text)
    return path


def local_with_import_blocked(tmp_path: Path, workdir: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """`curate local` over one short video while `import <module>` fails as if it were not installed (a
    module of that name first on PYTHONPATH raises ImportError); the finished process."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.mp4").write_bytes((SAMPLES / "flash_3.mp4").read_bytes())
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / f"{module}.py").write_text(f"raise ImportError('blocked for the test', name={module!r})\n")
    return curate("local", "-w", workdir, "-i", inputs, "--no-progress", *args, check=False,
                  env={"PYTHONPATH": str(blocker)})


@pytest.fixture(scope="session")
def bad_media(tmp_path_factory) -> Path:
    """A directory of every kind of bad or unusual input, made with real ffmpeg."""
    d = tmp_path_factory.mktemp("bad_media")
    src = SAMPLES / "carphone_pristine.mp4"
    (d / "zero.mp4").write_bytes(b"")
    data = (SAMPLES / "bikes.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])  # index (moov) at the end: lost
    ffmpeg("-i", str(SAMPLES / "bikes.mp4"), "-c", "copy", "-movflags", "+faststart", str(d / "fs.tmp.mp4"))
    data = (d / "fs.tmp.mp4").read_bytes()
    (d / "fs.tmp.mp4").unlink()
    (d / "truncated_faststart.mp4").write_bytes(data[: len(data) // 2])  # index first: half decodes
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(d / "audio_only.mp4"))
    ffmpeg("-i", str(src), "-vf", "scale=161:121,setsar=1", "-c:v", "libx264", "-pix_fmt", "yuv444p",
           str(d / "odd_161x121.mp4"))
    ffmpeg("-i", str(src), "-vf", "transpose=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(d / "portrait.mp4"))
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(d / "rotated.mp4"))
    for name, size in (("thumb_8x8.mp4", "8:8"), ("strip_200x6.mp4", "200:6")):  # too small for optical flow
        ffmpeg("-i", str(src), "-vf", f"scale={size},setsar=1", "-c:v", "libx264", "-pix_fmt", "yuv444p", str(d / name))
    shutil.copy(SAMPLES / "cuts_6shots.mp4", d / "good.mp4")
    return d


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path / "run"
