"""score's CPU side over several processes: decode and preprocess in `decode_workers` processes.

One producer thread decodes and preprocesses for every scorer; on a GPU node that thread, not the
GPU, sets the pace. With `score.decode_workers: N` (N > 1) the task's clips are split
into N groups of about equal decode cost (a long video shared in runs of consecutive clips), and N
worker processes each run the same engine (split's records first,
one decode per video for the rest, `ClipMeasurer`) and pass the ready model inputs back through
one bounded queue. Tensors travel through torch's shared-memory queue (no copy through a pipe);
the task process only batches and infers. Workers are spawned, not forked: the task process may
already hold torch's thread pools or a CUDA context, which a forked child must not touch.
"""

from __future__ import annotations

import queue as queue_module
import traceback
from collections.abc import Iterator
from pathlib import Path

from .base import by_video
from .scorers.base import clip_frames

POLL_S = 1.0
DONE, CRASHED = "done", "crashed"


RUNS_PER_GROUP = 4  # a video's clips go in runs of at most 1/(groups x this) of the work


BYTE_PIXELS = 220  # one compressed byte costs the decoder about as much as 220 output pixels


def decode_cost(clip: dict) -> int:
    """What decoding a clip costs, roughly: its frames times its pixels plus its share of the file's
    compressed bytes. Fitted on the test videos (single-threaded decode, 18 files from 160x84 to
    1080p): frames x pixels alone misjudged them by up to 7x (a high-bitrate 176x144 file costs
    as much as a 1080p one of a tenth its bytes per frame); with the bytes, within a fifth."""
    pixels = clip_frames(clip) * max(1, int(clip.get("width") or 0) * int(clip.get("height") or 0))
    size, duration = clip.get("bytes"), clip.get("duration_s")
    if not size or not duration:
        return pixels
    seconds = max(0.0, float(clip.get("end_s") or duration) - float(clip.get("start_s") or 0.0))
    return pixels + int(BYTE_PIXELS * size * min(1.0, seconds / float(duration)))


def balanced_groups(clips: list[dict], groups: int) -> list[list[dict]]:
    """Clips split into `groups` sets of about equal decode cost. Each video's clips are cut into runs
    of consecutive clips (so a long video is shared by several workers, each decoding its own
    stretch), and the runs are dealt largest first onto the lightest set."""
    limit = sum(decode_cost(c) for c in clips) / max(1, groups * RUNS_PER_GROUP)
    runs: list[tuple[int, list[dict]]] = []
    for video_clips in by_video(clips).values():
        run, load = [], 0
        for clip in sorted(video_clips, key=lambda c: float(c.get("start_s") or 0.0)):
            if run and load + decode_cost(clip) > limit:
                runs.append((load, run))
                run, load = [], 0
            run.append(clip)
            load += decode_cost(clip)
        if run:
            runs.append((load, run))
    sets: list[list[dict]] = [[] for _ in range(groups)]
    loads = [0] * groups
    for load, run in sorted(runs, key=lambda r: -r[0]):
        lightest = loads.index(min(loads))
        sets[lightest] += run
        loads[lightest] += load
    return [s for s in sets if s]


def _context():
    """torch's multiprocessing when torch is there (tensors through shared memory), else the stdlib."""
    try:
        import torch.multiprocessing as mp
    except ImportError:
        import multiprocessing as mp
    return mp.get_context("spawn")


def _work(config_plain: dict, handoff_path: str | None, stage: str, clips: list[dict], decode_threads: int,
          out) -> None:
    """One worker process: the engine over its clips, every Measured onto `out`, then its stats."""
    try:
        from curate.config import validate_config

        from .handoff import Handoff
        from .measure import ClipMeasurer
        from .scorers import build_scorers

        config = validate_config(config_plain, "run.yaml")
        scorers = build_scorers(config.score)
        handoff = Handoff.read(Path(handoff_path), config, scorers) if handoff_path else None
        stats: dict = {}
        measurer = ClipMeasurer(scorers, handoff, stage, stats=stats, decode_threads=decode_threads, unpack=True)
        for measured in measurer.clips(clips):
            out.put(measured)
        out.put((DONE, stats))
    except BaseException:  # the task process raises it; a worker never dies silently
        out.put((CRASHED, traceback.format_exc()))


def merge_stats(into: dict, stats: dict) -> None:
    """Sum the workers' engine stats (seconds and counts) into the task's."""
    for key, value in stats.items():
        if isinstance(value, dict):
            merged = into.setdefault(key, {})
            for name, count in value.items():
                merged[name] = merged.get(name, 0) + count
        elif isinstance(value, (int, float)):
            into[key] = round(into.get(key, 0) + value, 3)


def measured_in_workers(config_plain: dict, handoff_path: str | None, stage: str, clips: list[dict], workers: int,
                        queue_clips: int, decode_threads: int = 0, stats: dict | None = None,
                        log=None) -> Iterator:
    """Every clip's `Measured`, produced by `workers` processes; a worker's crash is raised here."""
    groups = balanced_groups(clips, workers)
    if not decode_threads:  # each worker's share of the task's cores (stages/cpus.py), not a pool per core each
        from .cpus import task_cores

        decode_threads = max(1, task_cores() // len(groups))
    context = _context()
    out = context.Queue(maxsize=max(queue_clips, len(groups)))
    processes = [context.Process(target=_work, name=f"curate-score-decode-{n}", daemon=True,
                                 args=(config_plain, handoff_path, stage, group, decode_threads, out))
                 for n, group in enumerate(groups)]
    for process in processes:
        process.start()
    if log:
        log(f"{stage} decoding in {len(processes)} worker processes ({', '.join(str(len(g)) for g in groups)} clips)")
    running = len(processes)
    try:
        while running:
            try:
                item = out.get(timeout=POLL_S)
            except queue_module.Empty:
                if not any(p.is_alive() for p in processes) and out.empty():
                    raise RuntimeError("a score decode worker exited unfinished (killed, out of memory?)") from None
                continue
            if isinstance(item, tuple) and item and item[0] == DONE:
                running -= 1
                merge_stats(stats if stats is not None else {}, item[1])
            elif isinstance(item, tuple) and item and item[0] == CRASHED:
                raise RuntimeError(f"a score decode worker failed:\n{item[1]}")
            else:
                yield item
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)
