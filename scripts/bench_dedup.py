"""Dedup benchmarks.

    python scripts/bench_dedup.py [--clips 1000000]   grouping speed and memory on synthetic signatures
    python scripts/bench_dedup.py --real               precision / recall of the frame signature on copies
                                                      of the real test videos, per distance threshold

Synthetic: every clip has 4-40 frame hashes (a random 64-bit value per clip, each frame one or two
bits off the one before, as a shot drifts); 5 % of the clips get a copy (each frame `d` bits off the
source's, d in 2..12) and 2 % a copy of their middle half. Printed: CPU seconds (one core) and peak
memory of banding + verification + grouping, the share of planted copies found per d (recall), and
clips merged with others than their copies (false merges: random clips the generator put within
max_bits of each other, as 64-bit values of a million clips do).

Real: copies of bikes.mp4 and the Elephants Dream clip made with ffmpeg (half size at CRF 40, an 8 %
crop re-encoded, every 3rd frame dropped, letterbox, rotation metadata, a segment cut out of the
longer video) against their ground-truth shots; negatives are every other pair of shots, of those
videos and of a static camera's three 10 s windows. Printed per threshold: recall, precision, and
the chosen threshold (the largest with no false merge, below the first false merge).
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic(clips: int, seed: int = 0):
    from stages.dedup_groups import Signatures

    rng = np.random.default_rng(seed)
    counts = rng.integers(4, 41, size=clips)
    copy_of = rng.choice(clips, size=clips // 20, replace=False)
    half_of = rng.choice(clips, size=clips // 50, replace=False)
    copy_bits = rng.choice([2, 4, 6, 8, 10, 12], size=len(copy_of))
    half_bits = rng.choice([2, 4, 6, 8, 10, 12], size=len(half_of))
    base = rng.integers(0, 2**63, size=clips, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, size=clips,
                                                                                              dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # Frames drift as in a real shot: each one a bit or two off the one before (a walk from the clip's value).
    walk = np.bitwise_xor.accumulate(_flips(rng, int(counts.sum()), 2))
    prefix = np.concatenate([[np.uint64(0)], walk[offsets[1:-1] - 1]])
    hashes = np.repeat(base, counts) ^ walk ^ np.repeat(prefix, counts)
    times = (np.arange(len(hashes)) - np.repeat(offsets[:-1], counts)).astype(np.float32) * 0.25
    parts_h, parts_t, parts_c = [hashes], [times], [counts]
    sources = [np.arange(clips)]
    bits_of = {}
    for picked, bits, half in ((copy_of, copy_bits, False), (half_of, half_bits, True)):
        lo = counts[picked] // 4 if half else np.zeros(len(picked), dtype=np.int64)
        n = counts[picked] // 2 if half else counts[picked]
        idx = np.repeat(offsets[picked] + lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        per_frame_bits = np.repeat(bits, n)
        parts_h.append(hashes[idx] ^ _flips_exact(rng, per_frame_bits))
        parts_t.append(times[idx] - np.repeat(lo, n).astype(np.float32) * 0.25)
        parts_c.append(n)
        start = sum(len(s) for s in sources)
        sources.append(picked)
        for k, b in enumerate(bits):
            bits_of[start + k] = int(b)
    counts_all = np.concatenate(parts_c)
    sig = Signatures(np.concatenate(parts_h), np.concatenate(parts_t),
                     np.concatenate([[0], np.cumsum(counts_all)]).astype(np.int64))
    return sig, np.concatenate(sources), bits_of


def _flips(rng, n: int, bits: int) -> np.ndarray:
    """n masks with up to `bits` random bits set."""
    out = np.zeros(n, dtype=np.uint64)
    for _ in range(bits):
        out |= np.uint64(1) << rng.integers(0, 64, size=n, dtype=np.uint64)
    return out


def _flips_exact(rng, bits: np.ndarray) -> np.ndarray:
    """One mask per entry with exactly bits[i] distinct bits set."""
    out = np.zeros(len(bits), dtype=np.uint64)
    short = np.flatnonzero(np.bitwise_count(out) < bits)
    while short.size:
        out[short] |= np.uint64(1) << rng.integers(0, 64, size=short.size, dtype=np.uint64)
        short = short[np.bitwise_count(out[short]) < bits[short]]
    return out


def bench_scale(clips: int, max_bits: int) -> None:
    from stages.dedup_groups import components, near_duplicates

    sig, source, bits_of = synthetic(clips)
    print(f"{sig.clips} clip signatures ({clips} originals + {sig.clips - clips} planted copies), "
          f"{len(sig.hashes) / 1e6:.1f} M frame hashes ({sig.hashes.nbytes / 1e6:.0f} MB)")
    stats: dict = {}
    tracemalloc.start()  # numpy reports its buffers to tracemalloc: the grouping's own peak
    started, cpu = time.perf_counter(), time.process_time()
    pairs, _ = near_duplicates(sig, max_bits, stats=stats)
    label = components(sig.clips, pairs)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"grouped in {cpu:.1f} s of CPU on one core ({seconds:.1f} s wall): {stats['bands']} bands of "
          f"{stats['band_bits']} bits, {stats['candidates']} candidate pairs ({stats['candidates_s']:.1f} s), "
          f"{stats['near_pairs']} duplicate pairs ({stats['verify_s']:.1f} s to verify); peak memory of the grouping "
          f"{peak:.0f} MB above the signatures (process peak RSS {rss:.0f} MB, generator included)")
    copies = np.arange(clips, sig.clips)
    found = label[copies] == label[source[copies]]
    for b in sorted(set(bits_of.values())):
        chosen = np.array([bits_of[int(c)] == b for c in copies])
        print(f"  copies {b:2d} bits off per frame: recall {found[chosen].mean():.3f}")
    distinct = np.unique(label.astype(np.int64) * sig.clips + source)  # (group, source) pairs
    false = len(distinct) - len(np.unique(label))
    print(f"  false merges (distinct sources in one group): {false}")


# -- real footage -------------------------------------------------------------------------------
COPIES = {
    "half_crf40": ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-c:v", "libx264", "-crf", "40"],
    "crop8": ["-vf", "crop=trunc(iw*0.92/2)*2:trunc(ih*0.92/2)*2:iw*0.04:ih*0.04", "-c:v", "libx264"],
    "drop3": ["-vf", "select='mod(n+1\\,3)'", "-fps_mode", "vfr", "-c:v", "libx264"],
    "letterbox": ["-vf", "pad=iw:trunc(ih*1.4/2)*2:0:trunc(ih*0.2/2)*2:black", "-c:v", "libx264"],
    "rotated": ["-c", "copy", "-metadata:s:v:0", "rotate=90"],
}


def shots(video: Path, cuts: Path) -> list[tuple[float, float]]:
    duration = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                     str(video)], capture_output=True, text=True).stdout)
    with open(cuts) as fh:
        times = [float(r["time_s"]) for r in csv.DictReader(fh)]
    edges = [0.0, *times, duration]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b - a >= 1.0]


def signature(path: Path, ranges: list[tuple[float, float]]):
    from stages.decode import scan_clips
    from stages.signatures import SignatureConfig, SignatureConsumer

    consumer = SignatureConsumer(SignatureConfig())
    out = []
    clips = [{"clip_id": str(n), "start_s": a, "end_s": b} for n, (a, b) in enumerate(ranges)]
    for scan in scan_clips(str(path), clips, [consumer]):
        cols = consumer.end()
        out.append((cols["hashes"], [t - scan.clip["start_s"] for t in cols["times"]]))
    return out


def bench_real() -> None:
    from stages.dedup_groups import Signatures, verify

    ffmpeg = ["ffmpeg", "-v", "error", "-nostdin", "-y"]
    bikes, dream = REPO / "samples" / "bikes.mp4", REPO / "tests" / "data" / "katna_elephantsdream_vfr.mp4"
    static = REPO / "tests" / "data" / "katna_cat_static.mp4"
    entries = []  # (content key, hashes, times)
    with tempfile.TemporaryDirectory() as tmp:
        for name, video, cuts in (("bikes", bikes, REPO / "tests" / "data" / "bikes.cuts.csv"),
                                  ("dream", dream, REPO / "tests" / "data" / "katna_elephantsdream_vfr.cuts.csv")):
            ranges = shots(video, cuts)
            for n, (h, t) in enumerate(signature(video, ranges)):
                entries.append((f"{name}/{n}", "original", h, t))
            for kind, args in COPIES.items():
                copy = Path(tmp) / f"{name}_{kind}.mp4"
                subprocess.run([*ffmpeg, "-i", str(video), *args, "-an", str(copy)], check=True)
                for n, (h, t) in enumerate(signature(copy, ranges)):
                    entries.append((f"{name}/{n}", kind, h, t))
        seg = Path(tmp) / "segment.mp4"
        subprocess.run([*ffmpeg, "-ss", "2.8", "-t", "3.5", "-i", str(dream), "-c:v", "libx264", "-an", str(seg)],
                       check=True)
        (h, t), = signature(seg, [(0.0, 3.5)])
        entries.append(("dream/1", "segment", h, t))  # 2.8-6.3 s lies inside the shot 2.49-7.49
        for n, (h, t) in enumerate(signature(static, [(0, 10), (10, 20), (20, 30)])):
            entries.append((f"static/{n}", "original", h, t))
    sig = Signatures.from_lists([e[2] for e in entries], [e[3] for e in entries])
    pairs = np.array([(i, j) for i in range(len(entries)) for j in range(i + 1, len(entries))])
    same = np.array([entries[i][0] == entries[j][0] for i, j in pairs])
    to_original = same & np.array(["original" in (entries[i][1], entries[j][1]) for i, j in pairs])
    print(f"{len(entries)} clips: {same.sum()} duplicate pairs (copies of one shot), {(~same).sum()} distinct pairs "
          "(other shots of the same video, other videos, a static camera's windows)")
    print(" bits  recall  (copy-original)  precision  false merges")
    found_all = None
    first_false = None
    for bits in range(0, 25, 2):
        ok, _ = verify(sig, pairs, bits)
        tp, fp = int((ok & same).sum()), int((ok & ~same).sum())
        recall, precision = tp / same.sum(), tp / max(tp + fp, 1)
        print(f"  {bits:3d}  {recall:6.3f}  {(ok & to_original).sum() / to_original.sum():15.3f}  {precision:9.3f}  "
              f"{fp:5d}")
        if fp and first_false is None:
            first_false = bits
        if found_all is None and (ok & to_original).sum() == to_original.sum():
            found_all = bits
    ok, dist = verify(sig, pairs, 64)
    worst = {}
    for (i, j), d, s in zip(pairs, dist, to_original):
        if s:
            kind = entries[j][1] if entries[i][1] == "original" else entries[i][1]
            worst[kind] = max(worst.get(kind, 0), float(d))
    print("largest distance of a true copy, per kind: " + ", ".join(f"{k} {v:g}" for k, v in worst.items()))
    if found_all is None or first_false is None:
        print(f"every copy found from {found_all} bits, first false merge at {first_false} bits")
        return
    chosen = (found_all + (first_false - found_all) // 2) // 2 * 2
    print(f"every copy found (against its original) from {found_all} bits, first false merge at {first_false} bits: "
          f"chosen threshold midway, {chosen} (dedup.max_bits default 14)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--max-bits", type=int, default=14)
    parser.add_argument("--real", action="store_true")
    args = parser.parse_args()
    if args.real:
        bench_real()
    else:
        bench_scale(args.clips, args.max_bits)


if __name__ == "__main__":
    main()
