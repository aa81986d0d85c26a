#!/usr/bin/env python
"""Score stage throughput per scorer: clips/s, frames/s and the share of time spent decoding.

    .venv/bin/python scripts/bench_score.py [--config C.yaml] [--random-weights] [--clip-s 3] [VIDEO_OR_DIR ...]
    .venv/bin/python scripts/bench_score.py --decode-workers 2 [...]

With --decode-workers N the CPU side (decode + preprocessing for every enabled scorer, the
stage's `score.decode_workers` processes) is timed alone with 1 and with N workers, then each
scorer's model side on those ready inputs: the producer's clips/s against the consumer's.

Default: samples/ cut into --clip-s second clips (frames/s counts the clips' decoded frames), the
scorers enabled in --config (default: the weight-free `quality`). --random-weights also scores with
laion_aes (full-size CLIP ViT-L/14 + the LAION MLP head), DOVER, UniMatch and a ViT-B/16 image
classifier, all with random weights of the real architectures, so their CPU/GPU cost is measured
without any download. Each scorer runs the stage's own path: the decode loop with its frame sampler
and preprocessing, then batched inference. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curate.config import load_config, validate_config  # noqa: E402
from stages.decode import scan_clips  # noqa: E402
from stages.probe import probe  # noqa: E402
from stages.score import Batcher  # noqa: E402
from stages.scorers import build_scorers  # noqa: E402


def random_weights(folder: Path, device: str) -> dict:
    """Score config for laion_aes and a classifier on random weights of the real architectures."""
    import math

    import open_clip
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    clip = folder / "open_clip_pytorch_model.bin"
    torch.save(open_clip.create_model("ViT-L-14-quickgelu").state_dict(), clip)
    sizes = [768, 1024, 128, 64, 16, 1]
    head = {}
    for index, (a, b) in zip((0, 2, 4, 6, 7), zip(sizes, sizes[1:])):
        head[f"layers.{index}.weight"] = torch.randn(b, a) / math.sqrt(a)
        head[f"layers.{index}.bias"] = torch.zeros(b)
    torch.save(head, folder / "head.pth")
    vit = folder / "vit"
    ViTForImageClassification(ViTConfig(num_labels=2, id2label={0: "clean", 1: "watermark"},
                                         label2id={"clean": 0, "watermark": 1})).save_pretrained(vit)
    ViTImageProcessor().save_pretrained(vit)
    from stages.scorers.dover_net import Dover
    from stages.scorers.unimatch_net import GMFlow

    torch.save(Dover().state_dict(), folder / "DOVER.pth")
    torch.save({"model": GMFlow().state_dict()}, folder / "gmflow.pth")
    return {"laion_aes": {"enabled": True, "device": device, "clip": {"path": str(clip)},
                          "head": {"path": str(folder / "head.pth")}},
            "dover": {"enabled": True, "device": device, "weights": {"path": str(folder / "DOVER.pth")}},
            "unimatch": {"enabled": True, "device": device, "weights": {"path": str(folder / "gmflow.pth")}},
            "classifiers": [{"model": str(vit), "label": "watermark", "device": device}]}


def clips_of(path: Path, clip_s: float) -> list[dict]:
    facts, reason = probe(path)
    if reason:
        return []
    duration = facts["duration_s"]
    starts = [i * clip_s for i in range(max(1, int(duration // clip_s)))]
    size = path.stat().st_size
    return [{"clip_id": f"{path.name}-{n}", "path": str(path), "start_s": s, "end_s": min(duration, s + clip_s),
             "fps": facts["fps"], "width": facts["width"], "height": facts["height"], "bytes": size,
             "duration_s": duration} for n, s in enumerate(starts)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--config")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="of every model scorer")
    parser.add_argument("--clip-s", type=float, default=3.0)
    parser.add_argument("--decode-workers", type=int, default=0, help="time the producer with 1 and N processes")
    args = parser.parse_args()
    targets = [Path(p) for p in args.paths] or [REPO / "samples"]
    files = sorted(f for t in targets for f in ([t] if t.is_file() else t.glob("*.mp4")))
    config = load_config(args.config) if args.config else validate_config({})
    temp = tempfile.TemporaryDirectory()
    if args.random_weights:
        score = config.score.model_dump()
        score.update(random_weights(Path(temp.name), args.device))
        config = validate_config({**config.model_dump(), "score": score})
    if args.dtype != "fp32":
        score = config.score.model_dump()
        for name, section in score.items():
            for entry in section if isinstance(section, list) else [section]:
                if isinstance(entry, dict) and "dtype" in entry and name != "quality":
                    entry["dtype"] = args.dtype
        config = validate_config({**config.model_dump(), "score": score})
    work = [(f, clips_of(f, args.clip_s)) for f in files]
    print(f"{len(work)} files, {sum(len(c) for _, c in work)} clips of {args.clip_s:g} s, device {args.device}")
    if args.decode_workers:
        producer_consumer(config, [c for _, clips in work for c in clips], args.decode_workers)
        temp.cleanup()
        return
    print(f"{'scorer':18} {'clips/s':>8} {'frames/s':>9} {'decode+prep %':>14} {'load s':>7} {'GPU MiB':>8}")
    for scorer in build_scorers(config.score):
        cuda = gpu_peak_reset(args.device)
        started = time.perf_counter()
        scorer.preflight()
        load_s = time.perf_counter() - started
        batcher = Batcher(scorer)
        clips = frames = 0
        started = time.perf_counter()
        for path, video_clips in work:
            for scan in scan_clips(str(path), video_clips, [scorer]):
                frames += scan.frames
                clips += 1
                batcher.add(scan.clip["clip_id"], scorer.live_record())
        batcher.flush()
        total = time.perf_counter() - started
        decode = total - batcher.seconds
        print(f"{scorer.main:18} {clips / total:8.2f} {frames / total:9.1f} "
              f"{100 * decode / total:13.1f}% {load_s:7.1f} {gpu_peak_mib(cuda):>8}")
    temp.cleanup()


def gpu_peak_reset(device: str):
    """torch.cuda with its peak-memory counter reset, when the bench runs on a GPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda


def gpu_peak_mib(cuda) -> str:
    return f"{cuda.max_memory_allocated() / 2**20:.0f}" if cuda else "-"


def producer_consumer(config, clips: list[dict], workers: int) -> None:
    """Producer clips/s with 1 and N decode workers (spawn included), then each scorer's consumer clips/s."""
    import os

    from stages.score_workers import measured_in_workers

    cores = len(os.sched_getaffinity(0))
    produced = {}
    # clips/s counts from the first clip out (the spawn and imports are the "first clip s" column).
    # Each worker decodes with cores / workers threads, as the stage does; "1 thread" shows one
    # worker held to one core, the share each of N workers gets.
    print(f"{'producer':28} {'clips/s':>8} {'first clip s':>13} {'x 1 worker':>11}")
    runs = [(1, 0, f"decode_workers 1 ({cores} threads)"), (1, 1, "decode_workers 1 (1 thread)")]
    runs += [(workers, 0, f"decode_workers {workers} ({max(1, cores // workers)} each)")] if workers > 1 else []
    for n, threads, label in runs:
        started = time.perf_counter()
        first, items = None, []
        for measured in measured_in_workers(config.to_plain(), None, "score", clips, n, queue_clips=32,
                                            decode_threads=threads):
            first = first or time.perf_counter() - started
            items.append(measured)
        total = time.perf_counter() - started
        rate = (len(items) - 1) / max(total - first, 1e-9)
        produced[(n, threads)] = (rate, items)
        print(f"{label:28} {rate:8.2f} {first:13.2f} {rate / produced[(1, 0)][0]:10.2f}x")
    items = [m for m in produced[(workers, 0)][1] if m.failure is None]
    print(f"{'consumer':18} {'clips/s':>8} {'load s':>13}")
    for scorer in build_scorers(config.score):
        started = time.perf_counter()
        scorer.preflight()
        load_s = time.perf_counter() - started
        batcher = Batcher(scorer)
        for m in items:
            batcher.add(m.clip["clip_id"], m.records[scorer.key])
        batcher.flush()
        print(f"{scorer.main:18} {len(items) / max(batcher.seconds, 1e-9):8.2f} {load_s:13.1f}")


if __name__ == "__main__":
    main()
