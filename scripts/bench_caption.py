#!/usr/bin/env python
"""Caption stage throughput against a local chat-completions server with a fixed latency.

    .venv/bin/python scripts/bench_caption.py [--latency 0.5] [--workers 1,2,4,8] [--clip-s 2] [VIDEO_OR_DIR ...]

Runs the stage's own request path (decode loop -> JPEG frames -> concurrent requests -> answers
checkpoint) against tests/fake_llm.py on 127.0.0.1 and prints captions/s per max_workers, next to
the ideal max_workers / latency, and the per-clip cost of frame extraction and JPEG encoding
measured alone. Figures only; nothing is asserted. Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fake_llm import FakeCaptionServer  # noqa: E402

from stages.caption import CaptionConfig, CaptionStage, FrameGrabber  # noqa: E402
from stages.caption_ledger import AnswerStore  # noqa: E402
from stages.decode import scan_clips  # noqa: E402
from stages.probe import probe  # noqa: E402


def clips_of(files: list[Path], clip_s: float) -> list[dict]:
    clips = []
    for path in files:
        facts, reason = probe(path)
        if reason:
            continue
        for n in range(max(1, int(facts["duration_s"] // clip_s))):
            clips.append({"clip_id": f"{path.stem}-{n}", "path": str(path), "relpath": path.name,
                          "start_s": n * clip_s, "end_s": min(facts["duration_s"], (n + 1) * clip_s)})
    return clips


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--clip-s", type=float, default=2.0)
    args = parser.parse_args()
    targets = [Path(p) for p in args.paths] or [REPO / "samples"]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.glob("*.mp4")))
    clips = clips_of(files, args.clip_s)

    cfg = CaptionConfig(enabled=True, api_key_env=None)
    grabber = FrameGrabber(cfg)
    started = time.perf_counter()
    for path in sorted({c["path"] for c in clips}):
        for _ in scan_clips(path, [c for c in clips if c["path"] == path], [grabber]):
            grabber.end()
    extract_ms = 1000 * (time.perf_counter() - started) / len(clips)
    print(f"{len(clips)} clips of {args.clip_s:g} s; frame extraction + JPEG encoding: {extract_ms:.1f} ms per clip "
          f"({cfg.frames} frames at {cfg.frame_size} px)")
    print(f"server latency {args.latency:g} s")
    print(f"{'max_workers':>11} {'captions/s':>11} {'ideal':>7} {'efficiency':>11}")
    for workers in [int(w) for w in args.workers.split(",")]:
        with FakeCaptionServer(latency_s=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
            stage = CaptionStage.__new__(CaptionStage)  # the stage's request path, without a run directory
            stage.cfg = CaptionConfig(enabled=True, api_key_env=None, base_url=f"{server.url}/v1", max_workers=workers)
            stage.ctx, stage.api_key = SimpleNamespace(index=0, log=lambda _m: None), None
            store = AnswerStore(Path(tmp) / "part-00000.answers.bench.jsonl")
            started = time.perf_counter()
            stage._caption(clips, store)
            store.close()
            rate = len(clips) / (time.perf_counter() - started)
        ideal = workers / args.latency
        print(f"{workers:11d} {rate:11.2f} {ideal:7.2f} {100 * rate / ideal:10.0f}%")


if __name__ == "__main__":
    main()
