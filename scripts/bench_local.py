#!/usr/bin/env python
"""`curate local` end to end against a plain ffmpeg decode of the same files, in this run.

    .venv/bin/python scripts/bench_local.py [--config C.yaml] [--workers 1,2] [--parts 2] [VIDEO_OR_DIR ...]
    (default: samples/ and tests/data/, plus bench-media/ when scripts/make_bench_media.sh made it)

The files are linked into one input directory and run through the whole default pipeline in a
fresh work directory per worker count, all in the same `--parts` (default 2: what two workers
can share) (start-up, probe, every stage, Parquet writes and the final
table included). Prints each wall time, the summed `ffmpeg -threads 1 -f null` decode time of the
same files, their ratio (goal: at most 2.0x with one worker) and the speed-up of each worker count
over the first (goal: 2 workers at least 1.7x of 1 on 2 cores), with when the first task started and
each stage's task seconds (from the .done markers). Figures only; nothing is asserted.
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
    workers, parts = [1, 2], 2
    while argv[:1] in (["--config"], ["--workers"], ["--parts"]):
        if argv[0] == "--config":
            extra = ["--config", argv[1]]
        elif argv[0] == "--parts":
            parts = int(argv[1])
        else:
            workers = [int(w) for w in argv[1].split(",")]
        argv = argv[2:]
    targets = [Path(a) for a in argv] or [p for p in (REPO / "samples", REPO / "tests" / "data",
                                                      REPO / "bench-media") if p.is_dir()]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.glob("*.mp4")))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for f in files:
            os.link(f, inputs / f.name) if os.stat(f).st_dev == os.stat(tmp).st_dev else os.symlink(f, inputs / f.name)
        walls, stages = {}, {}
        for n in workers:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "curate", "local", "-w", str(Path(tmp) / f"run-{n}"), "-i",
                                   str(inputs), "--workers", str(n), "--parts", str(parts), "--no-progress", *extra],
                                  cwd=REPO, capture_output=True, text=True)
            walls[n] = time.perf_counter() - start
            if proc.returncode != 0:
                sys.exit(f"curate local --workers {n} failed:\n{proc.stderr[-2000:]}")
            stages[n] = stage_seconds(Path(tmp) / f"run-{n}", start_epoch=time.time() - walls[n])
    decode = sum(ffmpeg_decode_s(f) for f in files)
    print(f"{len(files)} files in {parts} parts, ffmpeg -threads 1 decode {decode:.1f} s ({os.cpu_count()} cores)")
    for n, wall in walls.items():
        print(f"  curate local --workers {n}: {wall:.1f} s, ratio {wall / decode:.2f}x, "
              f"{walls[workers[0]] / wall:.2f}x the speed of --workers {workers[0]}")
        first, seconds = stages[n]
        print(f"    first task {first:.2f} s in; task seconds summed per stage: "
              + ", ".join(f"{stage} {s:.2f}" for stage, s in seconds.items()))


def stage_seconds(workdir: Path, start_epoch: float) -> tuple[float, dict[str, float]]:
    """When the run's first task started (seconds after `start_epoch`), and each stage's task seconds
    summed, from the tasks' .done markers."""
    import json

    seconds: dict[str, float] = {}
    dones = sorted(((json.loads(m.read_text()), m.parent.name) for m in workdir.glob("markers/*/*.done")),
                   key=lambda item: item[0]["started"])  # stages in the order they first ran
    for done, stage in dones:
        seconds[stage] = seconds.get(stage, 0.0) + done["finished"] - done["started"]
    return (dones[0][0]["started"] - start_epoch if dones else float("nan")), seconds


if __name__ == "__main__":
    main(sys.argv[1:])
