#!/usr/bin/env python
"""Fidelity on the real test footage: before/after figures for gradual transitions, OCR and NSFW.

    .venv/bin/python scripts/bench_fidelity.py [--transnetv2] [--no-split] [--shared /work/shared/testdata]

- split: boundary P/R/F1 against every truth CSV in tests/data (a cut within +-2 frames, a gradual
  transition anywhere from its start to its first clean frame), with `split.transitions` off and
  on; hard-cut F1 on the cut rows alone; fade/dissolve span P/R and the transition frames left
  inside a range that is no dropped transition row; split time with and without the finder.
- ocr: text_area_max with detection boxes alone (`verify: false`) and verified by recognition.
- nsfw: NudeNet's own max exposed-class score (nsfw_raw) and the skin-checked nsfw_score.

Videos of the shared test data are used too where `--shared` points at it. Nothing is asserted.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA, SAMPLES = REPO / "tests" / "data", REPO / "samples"


def truth(name: str):
    """(boundaries [(first, last)], cut frames, gradual spans [(first, end)]) of a truth CSV."""
    with open(DATA / f"{name}.cuts.csv") as fh:
        rows = list(csv.DictReader(fh))
    bounds = [(int(r.get("transition_start") or r["frame"]), int(r["frame"])) for r in rows]
    cuts = [int(r["frame"]) for r in rows if r.get("type", "cut") == "cut"]
    gradual = [(int(r["transition_start"]), int(r["transition_end"]) + 1, r["type"]) for r in rows
               if r.get("type") in ("fade", "dissolve", "flash_transition")]
    return bounds, cuts, gradual


def prf(pairs, match) -> tuple[float, float, float]:
    tp = sum(any(match(f, t) for f in found) for found, truth in pairs for t in truth)
    false = sum(not any(match(f, t) for t in truth) for found, truth in pairs for f in found)
    n = sum(len(truth) for _, truth in pairs)
    p = tp / (tp + false) if tp + false else 1.0
    r = tp / n if n else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def near(found: int, span, tol: int = 2) -> bool:
    return span[0] - tol <= found <= span[1] + tol


def overlaps(a, b, tol: int = 2) -> bool:
    return a[0] - tol < b[1] and b[0] - tol < a[1]


def bench_split(kinds: list[str]) -> None:
    from stages.probe import probe
    from stages.split import SplitConfig, detect_shots

    names = [p.name[:-len(".cuts.csv")] for p in sorted(DATA.glob("*.cuts.csv"))]
    for kind in kinds:
        for on in (False, True):
            cfg = SplitConfig(kind=kind, transitions=on)
            bounds, cuts, spans, seconds, inside, total = [], [], [], 0.0, 0, 0
            for name in names:
                path = SAMPLES / f"{name}.mp4" if (SAMPLES / f"{name}.mp4").is_file() else DATA / f"{name}.mp4"
                facts, _ = probe(path)
                start = time.perf_counter()
                shots = detect_shots(str(path), cfg, facts["width"], facts["height"], facts["fps"])
                seconds += time.perf_counter() - start
                b, c, g = truth(name)
                found = [a for a, _ in shots.ranges[1:]]
                bounds.append((found, b))
                if not g:  # hard-cut F1 on the videos whose truth is cuts only
                    cuts.append((found, [(x, x) for x in c]))
                spans.append((shots.transitions, g))
                clips = [(a, e) for a, e in shots.ranges if not shots.transition_at(a, e)]
                fd = [s for s in g if s[2] in ("fade", "dissolve")]
                inside += sum(max(0, min(e, t1) - max(a, t0)) for a, e in clips for t0, t1, _ in fd)
                total += sum(t1 - t0 for t0, t1, _ in fd)
            p, r, f = prf(bounds, near)
            cp, cr, cf = prf(cuts, near)
            tp, tr, tf = prf(spans, overlaps)
            print(f"split {kind:13} transitions {'on ' if on else 'off'}: boundaries P {p:.3f} R {r:.3f} F1 {f:.3f}"
                  f" | hard cuts P {cp:.3f} R {cr:.3f} F1 {cf:.3f} | transition spans P {tp:.2f} R {tr:.2f}"
                  f" | transition frames not dropped {inside}/{total} | {seconds:.1f} s")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, capture_output=True)


def bench_ocr(shared: Path | None) -> None:
    from stages.analyzers.ocr import OcrAnalyzer
    from stages.decode import scan_clips
    from stages.filter import FilterConfig

    tmp = Path(tempfile.mkdtemp())
    blurred = tmp / "bbb_blur_crf40.mp4"
    ffmpeg("-i", str(DATA / "nosubs_720p.mp4"), "-vf", "gblur=sigma=3", "-c:v", "libx264", "-crf", "40", str(blurred))
    videos = {"textures_pan (no text)": DATA / "textures_pan.mp4",
              "elephants dream (no text)": DATA / "katna_elephantsdream_vfr.mp4",
              "bbb blurred crf40 (no text)": blurred, "nosubs_720p (no text)": DATA / "nosubs_720p.mp4",
              "subs_720p (subtitles)": DATA / "subs_720p.mp4",
              "lightbox_text_160 (sign)": DATA / "lightbox_text_160.mp4", "bikes (taxi sign)": SAMPLES / "bikes.mp4",
              "pexels_fastcut (captions, UI)": DATA / "pexels_fastcut_vertical.mp4"}
    for label, verify in (("boxes only", False), ("verified", True)):
        ocr = OcrAnalyzer(FilterConfig(ocr={"sample_every_s": 0.5, "verify": verify}).ocr)
        ocr.preflight()
        for name, path in videos.items():
            start = time.perf_counter()
            list(scan_clips(str(path), [{"start_s": 0.0, "end_s": None}], [ocr]))
            result = ocr.end()
            print(f"ocr {label:10} {name:32} text_area_max {result['text_area_max']:.4f} "
                  f"({time.perf_counter() - start:.2f} s)")


def bench_nsfw(shared: Path | None) -> None:
    from stages.analyzers.nsfw import NsfwAnalyzer
    from stages.decode import scan_clips
    from stages.filter import FilterConfig

    videos = {"animation": ["nosubs_720p", "katna_elephantsdream_vfr"], "animals": ["katna_cat_static", "iio_cockatoo"],
              "sport": ["pexels_skate_motion", "mma_armwrestle_corrupt", "bikes"],
              "people": ["mma_skeleton_fixed_camera", "carphone_pristine", "pexels_fastcut_vertical"]}
    folders = [DATA, SAMPLES] + ([shared / "real", shared / "src"] if shared else [])
    nsfw = NsfwAnalyzer(FilterConfig(nsfw={"sample_every_s": 0.5}).nsfw)
    nsfw.preflight()
    for group, names in videos.items():
        for name in names:
            path = next((f / f"{name}.mp4" for f in folders if (f / f"{name}.mp4").is_file()), None)
            if path is None:
                continue
            list(scan_clips(str(path), [{"start_s": 0.0, "end_s": None}], [nsfw]))
            r = nsfw.end()
            print(f"nsfw {group:9} {name:28} nsfw_raw {r['nsfw_raw']:.3f} nsfw_score {r['nsfw_score']:.3f} "
                  f"nsfw_mean {r['nsfw_mean']:.3f}")


def main(argv: list[str]) -> None:
    shared = Path(argv[argv.index("--shared") + 1]) if "--shared" in argv else None
    if "--no-split" not in argv:
        bench_split(["pyscenedetect", "transnetv2"] if "--transnetv2" in argv else ["pyscenedetect"])
    bench_ocr(shared)
    bench_nsfw(shared)


if __name__ == "__main__":
    main(sys.argv[1:])
