#!/usr/bin/env python
"""`curate local --workers 1` end to end against a plain ffmpeg decode of the same files, in this run.

    .venv/bin/python scripts/bench_local.py [--config C.yaml] [VIDEO_OR_DIR ...]
    (default: samples/, tests/data/ and bench-media/ when scripts/make_bench_media.sh made it)

The files are linked into one input directory and run through the whole default pipeline in a
fresh work directory with one worker (start-up, probe, every stage, Parquet writes and the final
table included). Prints the wall time, the summed `ffmpeg -threads 1 -f null` decode time of the
same files and their ratio (goal: at most 2.5x). Figures only; nothing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from bench_split import ffmpeg_decode_s  # noqa: E402


def main(argv: list[str]) -> None:
    extra: list[str] = []
    if argv[:1] == ["--config"]:
        extra, argv = ["--config", argv[1]], argv[2:]
    targets = [Path(a) for a in argv] or [p for p in (REPO / "samples", REPO / "tests" / "data",
                                                      REPO / "bench-media") if p.is_dir()]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.glob("*.mp4")))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for f in files:
            os.link(f, inputs / f.name) if os.stat(f).st_dev == os.stat(tmp).st_dev else os.symlink(f, inputs / f.name)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "curate", "local", "-w", str(Path(tmp) / "run"), "-i",
                               str(inputs), "--workers", "1", "--no-progress", *extra], cwd=REPO,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"curate local failed:\n{proc.stderr[-2000:]}")
    decode = sum(ffmpeg_decode_s(f) for f in files)
    print(f"{len(files)} files: curate local --workers 1 {wall:.1f} s, ffmpeg -threads 1 decode {decode:.1f} s, "
          f"ratio {wall / decode:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
