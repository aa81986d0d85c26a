#!/usr/bin/env python
"""How curate's bookkeeping scales: status, manifest and submit over synthetic run directories.

    .venv/bin/python scripts/bench_scale.py [--indices 20000] [--stages 3] [--files 1000000] [--parts 1000]
                                            [--array 0-9999] [--keep DIR] [--fsync]

Builds, through the project's own writers (curate.manifest.write_manifest, curate.plan.write_plan,
curate.rundir.atomic_write_parquet, curate.markers.write_done / write_failed / try_claim):

1. a run of --indices indices (one small input file each) with the first --stages stages done for every
   index, a few failed and one claimed; then times `curate status --json` (the real CLI, start-up
   included, as an operator or --watch runs it) and prints the states it read;
2. `curate manifest` over --files empty-but-sized files into --parts parts (a subprocess: its peak
   memory is its own), printed as seconds per million files and MB;
3. `curate submit --array 0-9999 --dry-run` on run 1 with slurm.max_array_size 1001 (10 chunks per stage);
4. a run of --clips scored clips (random scores in the default stages' columns, every clip a stretch of
   samples/bikes.mp4) over 100 indices, then `curate calibrate` over all of them and over a sample.

The writers skip fsync while the run directories are built (tens of thousands of fsyncs would make the
build, not the thing measured, take minutes); --fsync keeps them. Figures only; nothing is asserted.
The goals (issue 22): status under 1 s at 20,000 x 3 and under 5 s at 100,000 x 6, a million-file
manifest under 60 s in under 1 GB, the dry run under 5 s, calibrate under 30 s over a million clips.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGE_NAMES = ("fetch", "split", "filter", "score", "caption", "upload")


def make_inputs(root: Path, count: int) -> Path:
    """`count` sparse files of varied sizes (1-100 MB as far as stat says), 1,000 per folder."""
    marker = root / f".made-{count}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for n in range(count):
        folder = root / f"d{n // 1000:04d}"
        if n % 1000 == 0:
            folder.mkdir(parents=True)
        path = folder / f"v{n:07d}.mp4"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
        os.ftruncate(fd, 1_000_000 * (1 + (n * 7919) % 100))
        os.close(fd)
    marker.touch()
    return root


def peak_rss_mb(args: list[str], repeat: int = 1) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, stdout) of a CLI run under /usr/bin/time: the best of `repeat` runs (a shared
    machine's other load only ever adds). Also prints the CPU seconds it used (its child processes too)."""
    best = None
    for _ in range(repeat):
        proc = subprocess.run(["/usr/bin/time", "-f", "BENCH %e %M %U %S", sys.executable, "-m", "curate", *args],
                              capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            sys.exit(f"curate {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        wall, rss_kb, user, system = map(float, proc.stderr.strip().splitlines()[-1].split()[1:])
        if best is None or wall < best[0]:
            best = (wall, rss_kb / 1024, proc.stdout, user + system)
    print(f"  ({args[0]}: best of {repeat}: {best[0]:.2f} s wall, {best[3]:.2f} s CPU)")
    return best[:3]


def build_run(work: Path, indices: int, stages: int) -> tuple[Path, Path]:
    """A run of `indices` parts with the first `stages` stages done (some failed, one claimed)."""
    import polars as pl

    from curate import markers
    from curate.config import load_config
    from curate.manifest import write_manifest
    from curate.plan import load_plan, write_plan
    from curate.rundir import RunDir, atomic_write_parquet

    names = STAGE_NAMES[:stages]
    config = work / "bench.yaml"
    # caption and upload are off by default: switched on only when more than four stages are asked for
    lines = ["slurm: {max_array_size: 1001}"] + [f"{name}: {{enabled: true}}" for name in ("caption", "upload")
                                                 if name in names]
    config.write_text("\n".join(lines) + "\n")
    inputs = make_inputs(work / f"inputs-{indices}", indices)
    cfg = load_config(config)
    cfg.input.dir, cfg.input.parts = str(inputs), indices
    run = RunDir.at(work / f"run-{indices}x{stages}")
    shutil.rmtree(run.root, ignore_errors=True)
    run.root.mkdir(parents=True)
    cfg.workdir = str(run.root)
    info = write_manifest(run, cfg.input)
    write_plan(run.run_yaml, cfg, info)
    plan = load_plan(run)
    linked = 0  # parts are hard links to a few small Parquet files
    failed = set(range(7, indices, max(1, indices // 25)))  # 25 failures in the last stage built
    now = time.time()
    for stage in plan.stages[:stages]:
        last = stage == plan.stages[min(stages, len(plan.stages)) - 1]
        folder = run.stage_part(stage, 0).parent
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(indices):
            if last and index in failed:
                markers.write_failed(run, stage, index, {"stage": stage, "index": index, "finished": now,
                                                         "fingerprint": plan.fingerprints[stage],
                                                         "error": "RuntimeError: synthetic", "traceback": ""})
                continue
            if linked % 60000 == 0:  # ext4 allows 65,000 links to one file
                template = work / f"template-{linked // 60000}.parquet"
                atomic_write_parquet(template, pl.DataFrame({"video_id": ["x"], "status": ["ok"]}))
            os.link(template, run.stage_part(stage, index))
            linked += 1
            markers.write_done(run, stage, index, {
                "stage": stage, "index": index, "fingerprint": plan.fingerprints[stage], "owner": {"pid": 1},
                "started": now - 3.6, "finished": now + index * 0.01, "seconds": 3.6 + (index % 10) / 10,
                "rows_in": 1, "rows_out": 1, "status_counts": {"ok": 1}})
    if stages < len(plan.stages):  # one running task of the next stage: a live claim of ours
        markers.try_claim(run.marker(plan.stages[stages], 0, "claim"))
    return run.root, config


def build_calibration_run(work: Path, clips: int, parts: int = 100) -> Path:
    """A run whose score stage is done on `parts` indices holding `clips` clips in all, with random scores
    in the columns the default stages write; every clip points at a bundled sample video, so thumbnails
    decode real frames."""
    import numpy as np
    import polars as pl

    from curate.config import load_config
    from curate.manifest import write_manifest
    from curate.plan import write_plan
    from curate.rundir import RunDir, atomic_write_parquet

    cfg = load_config(None)
    cfg.input.dir, cfg.input.parts = str(make_inputs(work / f"inputs-{parts}", parts)), parts
    run = RunDir.at(work / f"calibrate-{clips}")
    shutil.rmtree(run.root, ignore_errors=True)
    run.root.mkdir(parents=True)
    cfg.workdir = str(run.root)
    write_plan(run.run_yaml, cfg, write_manifest(run, cfg.input))
    rng = np.random.default_rng(0)
    video = str(REPO / "samples" / "bikes.mp4")
    per = clips // parts
    for index in range(parts):
        start = rng.uniform(0, 8, per).round(3)
        frame = pl.DataFrame({
            "video_id": [f"v{index}"] * per, "relpath": [f"d{index:03d}/bikes.mp4"] * per, "path": [video] * per,
            "status": ["ok"] * per, "clip_id": [f"c{index}-{n}" for n in range(per)], "start_s": start,
            "end_s": start + 2, "clip_duration_s": np.full(per, 2.0), "clip_path": [None] * per,
            "flash_ratio": rng.beta(0.5, 20, per), "motion_score": rng.gamma(2, 0.004, per),
            "motion_px": rng.gamma(2, 3, per), "motion_area": rng.beta(2, 3, per),
            "text_area_max": np.zeros(per), "text_area_mean": np.zeros(per),  # a constant score, as OCR gives
            "nsfw_score": rng.beta(0.3, 5, per), "nsfw_mean": rng.beta(0.3, 8, per),
            "quality": rng.uniform(0, 1, per), "sharpness": rng.gamma(2, 150, per), "noise": rng.gamma(2, 0.5, per),
            "blockiness": rng.normal(1, 0.05, per), "exposure": rng.uniform(0.5, 1, per)})
        atomic_write_parquet(run.stage_part("score", index), frame)
    return run.root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--indices", type=int, default=20000)
    ap.add_argument("--stages", type=int, default=3, help="stages done in the status run (at most 6)")
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=1000, help="manifest parts for --files")
    ap.add_argument("--array", default="0-9999", help="array spec for the submit dry run")
    ap.add_argument("--clips", type=int, default=1_000_000, help="scored clips for the calibrate run")
    ap.add_argument("--keep", type=Path, help="build here and keep it (inputs are reused between runs)")
    ap.add_argument("--fsync", action="store_true", help="let the writers fsync while building")
    ap.add_argument("--skip", default="", help="comma list of status,manifest,submit,calibrate to leave out")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if not args.fsync:
        os.fsync = lambda fd: None  # only this build process: the timed commands are subprocesses
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not skip >= {"status", "submit"}:
            start = time.perf_counter()
            run, config = build_run(work, args.indices, args.stages)
            print(f"built {run.name}: {args.indices} indices x {args.stages} stages in "
                  f"{time.perf_counter() - start:.1f} s")
        if "status" not in skip:
            seconds, rss, out = peak_rss_mb(["status", "--json", "-w", str(run)], repeat=3)
            doc = json.loads(out)
            counts = {s: {k: len(v) for k, v in d.items() if k in ("done", "failed", "running", "not_started")}
                      for s, d in doc["stages"].items()}
            print(f"status --json: {seconds:.2f} s ({rss:.0f} MB) over {args.indices} x {len(doc['stages'])} "
                  f"stages ({args.stages} done): {counts}")
            seconds, _, _ = peak_rss_mb(["status", "-w", str(run)], repeat=3)
            print(f"status (table): {seconds:.2f} s")
        if "submit" not in skip:
            seconds, rss, out = peak_rss_mb(["submit", "-w", str(run), "-c", str(config), "--array", args.array,
                                             "--dry-run", "--stage", "all"], repeat=3)
            chunks = out.count("# --- ")
            print(f"submit --array {args.array} --dry-run (MaxArraySize 1001): {seconds:.2f} s, "
                  f"{chunks} scripts printed ({rss:.0f} MB)")
        if "manifest" not in skip:
            start = time.perf_counter()
            inputs = make_inputs(work / f"inputs-{args.files}", args.files)
            print(f"inputs: {args.files} files ready in {time.perf_counter() - start:.1f} s")
            target = work / f"manifest-{args.files}"
            shutil.rmtree(target, ignore_errors=True)
            seconds, rss, out = peak_rss_mb(["manifest", "--json", "-w", str(target), "-i", str(inputs), "--parts",
                                             str(args.parts)])
            info = json.loads(out)
            print(f"manifest: {args.files} files into {info['num_parts']} parts in {seconds:.1f} s "
                  f"({seconds / args.files * 1e6:.1f} s per million files), peak {rss:.0f} MB")
        if "calibrate" not in skip:
            start = time.perf_counter()
            run = build_calibration_run(work, args.clips)
            print(f"built {run.name}: {args.clips} scored clips in {time.perf_counter() - start:.1f} s")
            seconds, rss, out = peak_rss_mb(["calibrate", "--json", "-w", str(run)])
            doc = json.loads(out)
            page = Path(doc["html"]).read_text()
            print(f"calibrate over {doc['clips']} clips: {seconds:.1f} s, peak {rss:.0f} MB, "
                  f"{page.count('data:image/jpeg')} thumbnails, {len(doc['charts'])} scores charted")
            seconds, rss, _ = peak_rss_mb(["calibrate", "--json", "-w", str(run), "--sample-size", "100000"])
            print(f"calibrate --sample-size 100000: {seconds:.1f} s, peak {rss:.0f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
