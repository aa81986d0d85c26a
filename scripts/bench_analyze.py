#!/usr/bin/env python
"""The whole CPU path against one plain ffmpeg decode of the same files, measured in this run.

    .venv/bin/python scripts/bench_analyze.py [--config C.yaml] [VIDEO_OR_DIR ...]
    (default: samples/, tests/data/ and bench-media/ when scripts/make_bench_media.sh made it: long
    160x90 and 1080p footage; --config measures other settings, e.g. ocr.recognize: true)

Runs what the split and filter stages run on each file: split's one decode feeding the shot
detector, the flash guard and the filter analyzers' recorders (stages/handoff.py), then the filter
columns from those records (OCR and NSFW inference batched across the file's clips) and a decode
of any clip without a record. Prints frames/s, the time ratio to `ffmpeg -threads 1 -i F -f null -`
(goal: at most 2x) and a per-analyzer cost table. Figures only; nothing is asserted.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_split import ffmpeg_decode_s  # noqa: E402  (same baseline as the split benchmark)

from curate.config import validate_config  # noqa: E402
from stages import handoff  # noqa: E402
from stages.analyzers import build_analyzers  # noqa: E402
from stages.filter import filter_columns  # noqa: E402
from stages.handoff import Handoff  # noqa: E402
from stages.measure import ClipMeasurer  # noqa: E402
from stages.probe import probe  # noqa: E402
from stages.split import detect_shots, windows  # noqa: E402


def timed(consumer, name: str, costs: dict[str, float], methods=("feed", "live_record", "measure")):
    """Wrap the consumer's methods with a stopwatch that adds to costs[name]."""
    for method in methods:
        original = getattr(consumer, method, None)
        if original is None:
            continue

        def wrapper(*args, _original=original):
            start = time.perf_counter()
            try:
                return _original(*args)
            finally:
                costs[name] += time.perf_counter() - start

        setattr(consumer, method, wrapper)
    return consumer


def main(argv: list[str]) -> None:
    config = validate_config({})
    if argv[:1] == ["--config"]:
        from curate.config import load_config

        config, argv = load_config(argv[1]), argv[2:]
    targets = [Path(a) for a in argv] or [p for p in (REPO / "samples", REPO / "tests" / "data",
                                                      REPO / "bench-media") if p.is_dir()]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.glob("*.mp4")))
    costs: dict[str, float] = defaultdict(float)
    analyzers = [timed(a, a.name, costs) for a in build_analyzers(config.filter)]
    for analyzer in analyzers:
        analyzer.preflight()
    recorders = [(a, timed(r, f"{a.name} recorder (in split)", costs, ("feed", "for_clip")), s)
                 for a, r, s in handoff.recorders(config, ["filter"])]
    print(f"{'file':28} {'frames':>6} {'size':>10} {'ffmpeg fps':>10} {'path fps':>9} {'ratio':>6}")
    total = defaultdict(float)
    per_file: list[tuple[Path, int, float, float]] = []  # (file, frames, path seconds, ffmpeg seconds)
    for f in files:
        facts, reason = probe(f)
        if reason:
            continue
        base = ffmpeg_decode_s(f)
        before = sum(costs.values())
        start = time.perf_counter()
        shots = detect_shots(str(f), config.split, facts["width"], facts["height"], facts["fps"],
                             [r for _, r, _ in recorders])
        clips = []
        for a, b in shots.ranges:
            for ca, cb, drop in windows(a, b, facts["fps"], config.split.min_s, config.split.max_s):
                if not drop:
                    clips.append({"clip_id": f"{ca}", "path": str(f), "start_s": shots.time_at(ca, facts["fps"]),
                                  "end_s": shots.time_at(cb, facts["fps"]), "clip_duration_s": 0.0,
                                  "width": facts["width"], "height": facts["height"]})
        records = {}
        for analyzer, recorder, _ in recorders:
            for clip in clips:
                if (record := recorder.for_clip(clip)) is not None:
                    records[(analyzer.key, clip["clip_id"])] = record
        split_s = time.perf_counter() - start
        start = time.perf_counter()
        stats: dict = {}
        # the filter stage's own engine and cascade: records first, the decode loop for the rest
        filter_columns(analyzers, config.filter, ClipMeasurer(analyzers, Handoff(records), stats=stats), clips)
        filter_s = time.perf_counter() - start
        analyzers_s = sum(costs.values()) - before
        recorders_s = sum(v for k, v in costs.items() if k.endswith("(in split)")) - total["recorders"]
        total["recorders"] += recorders_s
        seconds = split_s + filter_s
        total["ffmpeg"] += base
        total["split"] += split_s - recorders_s
        total["filter decode"] += filter_s - (analyzers_s - recorders_s)
        total["frames"] += shots.decoded
        total["live clips"] += len(clips) - stats.get("clips_from_split", 0)
        total["clips"] += len(clips)
        per_file.append((f, shots.decoded, seconds, base))
        print(f"{f.name:28} {shots.decoded:6d} {facts['width']:>4}x{facts['height']:<5} "
              f"{shots.decoded / base:10.0f} {shots.decoded / seconds:9.0f} {seconds / base:6.2f}")
    whole = total["split"] + total["filter decode"] + sum(costs.values())
    small = [row for row in per_file if row[0].parent.name != "bench-media"]
    # the line without the long bench media, whose decode dilutes per-clip costs
    if small and len(small) < len(per_file):
        frames, seconds, base = (sum(row[i] for row in small) for i in (1, 2, 3))
        print(f"{'TOTAL without bench-media/':28} {frames:6d} {'':10} {frames / base:10.0f} {frames / seconds:9.0f} "
              f"{seconds / base:6.2f}")
    print(f"{'TOTAL':28} {int(total['frames']):6d} {'':10} {total['frames'] / total['ffmpeg']:10.0f} "
          f"{total['frames'] / whole:9.0f} {whole / total['ffmpeg']:6.2f}")
    print("\nper-analyzer cost (share of the whole path; x = seconds / ffmpeg -threads 1 decode seconds)")
    rows = [("split (decode + detector + flash guard)", total["split"]),
            (f"filter decode ({int(total['live clips'])} of {int(total['clips'])} clips unrecorded)",
             total["filter decode"])] + sorted(costs.items(), key=lambda kv: -kv[1])
    for name, seconds in rows:
        print(f"  {name:42} {seconds:7.2f} s  {100 * seconds / whole:5.1f} %  {seconds / total['ffmpeg']:5.2f}x")
    print(f"  {'ffmpeg -threads 1 -f null (baseline)':42} {total['ffmpeg']:7.2f} s")
    print("(an analyzer's own row holds its inference on the records or its live feed; its recorder row, the work"
          " split's decode does for it)")


if __name__ == "__main__":
    main(sys.argv[1:])
