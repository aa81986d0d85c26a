"""Fades and dissolves end clips: found on real footage, their frames a dropped row, no false ones."""

import csv

import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, write_config

from stages.transitions import find_fades, merge

GRADUAL = ("fade", "dissolve")
# a cut through a few white frames with a light leak (the fast-cut edit): a transition too
THROUGH_FLASH = "flash_transition"


def truth_of(name: str, kinds: tuple = GRADUAL) -> list[tuple[int, int, str]]:
    """The gradual transitions of a truth CSV as (first, end exclusive, kind)."""
    path = DATA / f"{name}.cuts.csv"
    if not path.is_file():
        return []
    with open(path) as fh:
        return [(int(r["transition_start"]), int(r["transition_end"]) + 1, r["type"])
                for r in csv.DictReader(fh) if r.get("type") in kinds]


def videos() -> dict:
    """Every real video in the repo (truth or not): where none is listed, none may be found."""
    found = {p.stem: p for p in sorted(SAMPLES.glob("*.mp4"))}
    found.update({p.stem: p for p in sorted(DATA.glob("*.mp4")) if p.stem not in found})
    return found


def overlaps(a: tuple, b: tuple, tol: int = 2) -> bool:
    return a[0] - tol < b[1] and b[0] - tol < a[1]


def transition_prf(results: dict) -> tuple[float, float, float]:
    """Micro P/R/F1 of found transition spans against the truth spans ({name: (found, truth)})."""
    hits = sum(any(overlaps(t, f) for f in found) for found, truth in results.values() for t in truth)
    false = sum(not any(overlaps(f, t) for t in truth) for found, truth in results.values() for f in found)
    n_truth = sum(len(truth) for _, truth in results.values())
    precision = (hits / (hits + false)) if hits + false else 1.0
    recall = hits / n_truth if n_truth else 1.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@pytest.mark.parametrize("kind", ["pyscenedetect", "transnetv2"])
def test_fades_and_dissolves_found_on_real_footage(kind, capsys):
    from stages.probe import probe
    from stages.split import SplitConfig, detect_shots

    cfg = SplitConfig(kind=kind)
    results, inside = {}, {}
    for name, path in videos().items():
        facts, _ = probe(path)
        shots = detect_shots(str(path), cfg, facts["width"], facts["height"], facts["fps"])
        truth = truth_of(name)
        results[name] = (shots.transitions, truth_of(name, (*GRADUAL, THROUGH_FLASH)))
        # transition frames left inside a range that is no transition (a clip, if long enough)
        clips = [(a, b) for a, b in shots.ranges if not shots.transition_at(a, b)]
        inside[name] = sum(max(0, min(b, t1) - max(a, t0)) for a, b in clips for t0, t1, _ in truth)
    precision, recall, f1 = transition_prf(results)
    truth_frames = sum(t1 - t0 for name in results for t0, t1, _ in truth_of(name))
    with capsys.disabled():
        print(f"\n{kind} transitions: P {precision:.2f} R {recall:.2f} F1 {f1:.2f}; transition frames outside "
              f"the dropped rows {sum(inside.values())}/{truth_frames}")
        for name, (found, truth) in results.items():
            if found or truth:
                print(f"  {name}: found {found} truth {truth}")
    real = results["transitions_real"]
    assert all(any(overlaps(t, f) for f in real[0]) for t in real[1])  # all six, to and from black and white
    assert precision == 1.0, {n: r for n, r in results.items() if r[0]}  # none on cuts, flashes, pans, shake
    assert recall >= 0.6  # the light leaks of 3 frames in the fast-cut edit are its hard cuts' business
    assert sum(inside.values()) <= 0.25 * truth_frames
    if kind == "pyscenedetect":  # the kind of each, from the luma and the blend
        assert [k for *_, k in real[0]] == [k for *_, k in real[1]]
        assert sum(inside.values()) <= 0.1 * truth_frames


def test_a_flash_is_no_fade_and_spans_merge():
    import numpy as np

    shot = np.random.default_rng(0).uniform(40, 200, (18, 32)).astype(np.float32)
    flash = [shot] * 10 + [np.full((18, 32), 255.0, np.float32)] * 2 + [shot] * 10  # no ramp
    assert find_fades(np.stack(flash)) == []
    ramp = [shot] * 10 + [shot * (1 - i / 6) for i in range(1, 6)] + [np.zeros((18, 32), np.float32)] * 3 + [shot] * 5
    assert find_fades(np.stack(ramp)) == [(10, 18, "fade")]  # out over frames 10-14, black 15-17, then a cut
    assert merge([(5, 9, "dissolve"), (9, 12, "fade"), (20, 22, "dissolve")]) == [(5, 12, "fade"),
                                                                                     (20, 22, "dissolve")]


def test_transition_frames_are_dropped_rows_and_no_clip_holds_one(tmp_path, workdir):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "t.mp4").write_bytes((DATA / "transitions_real.mp4").read_bytes())
    cfg = write_config(tmp_path / "c.yaml", "filter:\n  enabled: false\n")
    curate("local", "-w", workdir, "-i", inp, "-c", cfg, "--no-progress")
    table = pl.read_parquet(workdir / "metadata" / "clips.parquet").sort("start_frame")
    rows = table.filter(pl.col("boundary").is_in(list(GRADUAL)))
    truth = truth_of("transitions_real")
    assert rows["boundary"].to_list() == [k for *_, k in truth]
    assert set(rows["status"]) == {"dropped"} and all(r.startswith(("fade: ", "dissolve: ")) for r in rows["reason"])
    ok = table.filter(pl.col("status") == "ok")
    assert ok.height >= 5
    for clip in ok.iter_rows(named=True):
        for first, end, _ in truth:  # at most the faintest quarter of a slow dissolve's frames (blend < 0.25)
            inside = min(clip["end_frame"], end) - max(clip["start_frame"], first)
            assert inside <= max(2, (end - first) // 4), (clip["clip_id"], first, inside)
    assert 205 in ok["start_frame"].to_list()  # the hard cut between them is still a cut
    # every frame is accounted for, once
    assert table["start_frame"].to_list()[1:] == table["end_frame"].to_list()[:-1]


def test_chunks_of_a_long_video_find_the_same_transitions(monkeypatch):
    """Dissolves are looked for in overlapping chunks (memory stays flat on an hour of video): chunks
    smaller than this 366-frame video find what one pass finds."""
    from stages import transitions
    from stages.decode import iter_frames

    def find():
        finder = transitions.TransitionFinder()
        finder.begin({})
        for frame in iter_frames(str(DATA / "transitions_real.mp4")):
            finder.feed(frame)
        return finder.end()

    whole = find()
    monkeypatch.setattr(transitions, "CHUNK", 150)
    monkeypatch.setattr(transitions, "OVERLAP", 70)
    assert find() == whole and len(whole) == 6
