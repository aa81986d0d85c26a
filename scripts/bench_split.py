#!/usr/bin/env python
"""Split stage throughput against a plain single-threaded ffmpeg decode of the same files.

    .venv/bin/python scripts/bench_split.py [--transnetv2] [--device cuda] [VIDEO_OR_DIR ...]   (default: samples/)

Prints frames/s of the split stage's shot detection and its time ratio to
`ffmpeg -threads 1 -i F -f null -` (ratio 1.0 = as fast as bare decoding; higher is slower),
both measured here, in this run. No number is asserted anywhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stages.probe import probe  # noqa: E402  (needs REPO on sys.path first)
from stages.split import SplitConfig, detect_shots  # noqa: E402


def ffmpeg_decode_s(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-threads", "1", "-i", str(path), "-an", "-f", "null", "-"],
                   check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def split_s(path: Path, cfg: SplitConfig, facts: dict) -> tuple[float, int]:
    start = time.perf_counter()
    shots = detect_shots(str(path), cfg, facts["width"], facts["height"], facts["fps"])
    return time.perf_counter() - start, shots.decoded


def main(argv: list[str]) -> None:
    device = argv[argv.index("--device") + 1] if "--device" in argv else "cpu"
    argv = [a for a in argv if a not in ("--device", device)]
    targets = [Path(a) for a in argv if not a.startswith("--")] or [REPO / "samples"]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.rglob("*.mp4")))
    configs = {"pyscenedetect": SplitConfig(kind="pyscenedetect")}
    if "--transnetv2" in sys.argv:
        configs["transnetv2"] = SplitConfig(kind="transnetv2", device=device)
    header = f"{'file':32} {'frames':>6} {'size':>10} {'ffmpeg fps':>10}"
    for name in configs:
        header += f" {name[:9] + ' fps':>13} {'ratio':>6}"
    print(header)
    totals = {"ffmpeg": 0.0, "frames": 0, **{n: 0.0 for n in configs}}
    for f in files:
        facts, reason = probe(f)
        if reason:
            print(f"{f.name:32} skipped: {reason}")
            continue
        base = min(ffmpeg_decode_s(f) for _ in range(2))
        line = ""
        frames = 0
        for name, cfg in configs.items():
            seconds, frames = min((split_s(f, cfg, facts) for _ in range(2)), key=lambda r: r[0])
            totals[name] += seconds
            line += f" {frames / seconds:13.0f} {seconds / base:6.2f}"
        totals["ffmpeg"] += base
        totals["frames"] += frames
        print(f"{f.name:32} {frames:6d} {facts['width']:>4}x{facts['height']:<5} {frames / base:10.0f}{line}")
    line = ""
    for name in configs:
        line += f" {totals['frames'] / totals[name]:13.0f} {totals[name] / totals['ffmpeg']:6.2f}"
    print(f"{'TOTAL':32} {totals['frames']:6d} {'':10} {totals['frames'] / totals['ffmpeg']:10.0f}{line}")
    print("ratio = split time / `ffmpeg -threads 1 -f null` time on the same file (lower is better)")


if __name__ == "__main__":
    main(sys.argv[1:])
