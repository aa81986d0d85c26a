#!/usr/bin/env python
"""Per-task overhead of the Slurm path, and `curate run` start-up time.

    SLURM_CONF=... .venv/bin/python scripts/bench_slurm.py [--tasks 40]

1. start-up: wall time of `curate run` for a task that is already done (imports + plan + markers)
   and for a fetch of one tiny video, against a bare `python -c pass` measured in the same run;
2. latency: submit-to-done of a one-index fetch array (Slurm scheduling + start-up + work);
3. throughput: a --tasks-index fetch array, wall time per task.
Needs a cluster for 2 and 3 (scripts/slurm-local-cluster.sh up); 1 runs anywhere. Prints
figures only; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def timed(cmd: list[str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def curate(*args: str) -> str:
    return subprocess.run([PY, "-m", "curate", *args], check=True, capture_output=True, text=True).stdout


def make_inputs(root: Path, count: int) -> Path:
    tiny = root / "tiny.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.3",
                    "-pix_fmt", "yuv420p", str(tiny)], check=True)
    inputs = root / f"in{count}"
    inputs.mkdir()
    for i in range(count):
        os.link(tiny, inputs / f"v{i:04d}.mp4")
    return inputs


def wait_done(workdir: Path, count: int, timeout: float = 1800) -> float:
    deadline = time.time() + timeout
    while True:
        doc = json.loads(curate("status", "-w", str(workdir), "--json"))
        fetch = doc["stages"]["fetch"]
        if len(fetch["done"]) + len(fetch["failed"]) >= count:
            return time.perf_counter()
        if time.time() > deadline:
            raise SystemExit(f"timed out: {fetch}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    try:
        one = make_inputs(root, 1)
        work = root / "startup"
        curate("manifest", "-w", str(work), "-i", str(one))
        bare = timed([PY, "-c", "pass"], args.repeat)
        run_cmd = [PY, "-m", "curate", "run", "-w", str(work), "--stage", "fetch", "--index", "0"]
        first = time.perf_counter()
        subprocess.run(run_cmd, check=True, capture_output=True)
        fetch_one = time.perf_counter() - first
        skip = timed(run_cmd, args.repeat)
        status = timed([PY, "-m", "curate", "status", "-w", str(work), "--json"], args.repeat)
        print("start-up (median wall, this machine)")
        print(f"  python -c pass                       {bare:6.3f} s   (baseline)")
        print(f"  curate run, task already done        {skip:6.3f} s   {skip / bare:5.1f}x baseline")
        print(f"  curate run, fetch of one tiny video  {fetch_one:6.3f} s   {fetch_one / bare:5.1f}x baseline")
        print(f"  curate status --json                 {status:6.3f} s   {status / bare:5.1f}x baseline")

        if not (os.environ.get("SLURM_CONF") and shutil.which("sbatch")):
            print("no Slurm cluster (export SLURM_CONF; scripts/slurm-local-cluster.sh up): skipping 2 and 3")
            return
        config = root / "bench.yaml"
        config.write_text("slurm:\n  profile: local-test\n")
        latencies = []
        for n in range(3):
            workdir = root / f"latency{n}"
            start = time.perf_counter()
            curate("submit", "-c", str(config), "-w", str(workdir), "-i", str(one), "--stage", "fetch")
            latencies.append(wait_done(workdir, 1) - start)
        print("Slurm path")
        print(f"  submit -> done, one tiny task       {statistics.median(latencies):6.2f} s (median of 3)")
        many = make_inputs(root, args.tasks)
        workdir = root / "throughput"
        start = time.perf_counter()
        curate("submit", "-c", str(config), "-w", str(workdir), "-i", str(many), "--parts", str(args.tasks),
               "--stage", "fetch")
        elapsed = wait_done(workdir, args.tasks) - start
        print(f"  {args.tasks}-task array, submit -> all done  {elapsed:6.2f} s = "
              f"{elapsed / args.tasks:.3f} s per task ({os.cpu_count()} cores)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
