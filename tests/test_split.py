import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, local_with_import_blocked, write_config

from stages.split import windows


def test_short_shot_dropped_with_reason():
    assert windows(0, 20, 25.0, 1.0, 10.0) == [(0, 20, "shot of 0.80 s is shorter than split.min_s=1")]


def test_shot_within_range_kept_whole():
    assert windows(10, 60, 25.0, 1.0, 10.0) == [(10, 60, None)]


def test_long_shot_cut_into_equal_windows():
    pieces = windows(0, 625, 25.0, 1.0, 10.0)  # 25 s -> 3 windows of 8.33 s
    assert [p[2] for p in pieces] == [None] * 3
    assert pieces[0][0] == 0 and pieces[-1][1] == 625
    assert all(a2 == b1 for (_, b1, _), (a2, _, _) in zip(pieces, pieces[1:]))
    assert all((b - a) / 25 <= 10.0 for a, b, _ in pieces)


def test_long_shot_when_equal_windows_would_be_too_short():
    # 10.48 s with min_s 8: two equal windows of 5.24 s would be too short, so one full 10 s
    # window is kept and the 0.48 s rest is dropped with its reason
    pieces = windows(0, 262, 25.0, 8.0, 10.0)
    assert [(a, b) for a, b, _ in pieces] == [(0, 250), (250, 262)]
    assert pieces[0][2] is None and pieces[1][2].startswith("remainder of 0.48 s")


# Every real video with cut truth in the repo (a header alone = verified no cut); flash_3 has
# three white frames inside one shot and no cut.
TRUTH = {"flash_3": None,
         **{p.name[:-len(".cuts.csv")]: SAMPLES if (SAMPLES / p.name.replace(".cuts.csv", ".mp4")).is_file() else DATA
            for p in sorted(DATA.glob("*.cuts.csv"))}}


def _truth(name):
    """[(first, last)]: a cut at `frame`, or a gradual transition from transition_start to frame."""
    if TRUTH[name] is None:
        return []
    with open(DATA / f"{name}.cuts.csv") as fh:
        return [(int(r.get("transition_start") or r["frame"]), int(r["frame"])) for r in csv.DictReader(fh)]


def _matches(found: int, first: int, last: int, tol: int = 2) -> bool:
    return first - tol <= found <= last + tol


def prf(results: dict) -> tuple[float, float, float]:
    """Micro-averaged precision, recall, F1 over {name: (found, truth)}."""
    tp = sum(any(_matches(f, a, b) for f in found) for found, truth in results.values() for a, b in truth)
    n_truth = sum(len(truth) for _, truth in results.values())
    false = sum(not any(_matches(f, a, b) for a, b in truth) for found, truth in results.values() for f in found)
    precision = (tp / (tp + false)) if tp + false else 1.0
    recall = tp / n_truth if n_truth else 1.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


KINDS = ["pyscenedetect", "transnetv2"]


@pytest.mark.parametrize("kind", KINDS)
def test_cuts_found_on_real_video(kind, capsys):
    """P/R/F1 over every real video with truth: cuts within +-2 frames (a gradual transition anywhere
    from its start to its first clean frame), flashes and corruption not taken for cuts."""
    from stages.probe import probe
    from stages.split import SplitConfig, detect_shots

    cfg = SplitConfig(kind=kind)
    results = {}
    for name, folder in TRUTH.items():
        path = (folder or SAMPLES) / f"{name}.mp4"
        facts, _ = probe(path)
        shots = detect_shots(str(path), cfg, facts["width"], facts["height"], facts["fps"])
        results[name] = ([start for start, _ in shots.ranges[1:]], _truth(name))
    precision, recall, f1 = prf(results)
    with capsys.disabled():
        for name, (found, truth) in results.items():
            one = prf({name: (found, truth)})
            print(f"\n{kind} {name}: P {one[0]:.2f} R {one[1]:.2f} F1 {one[2]:.2f} found {found} "
                  f"truth {[b for _, b in truth]}")
        print(f"{kind} all: precision {precision:.2f} recall {recall:.2f} F1 {f1:.2f}")
    assert results["flash_3"][0] == [] and results["katna_cat_static"][0] == []
    assert prf({n: results[n] for n in ("cuts_6shots", "bikes")})[:2] == (1.0, 1.0)
    if kind == "pyscenedetect":
        # the 8-frame first shot of the Elephants Dream clip and the fast-cut edit's shots of 4+ frames
        found = results["pexels_fastcut_vertical"][0]
        assert 8 in results["katna_elephantsdream_vfr"][0] and 48 in found and 52 in found
        assert precision >= 0.8 and recall >= 0.85, (precision, recall)
    else:
        assert precision >= 0.7 and recall >= 0.6, (precision, recall)


def test_flash_guard_drops_flash_cuts_pyscenedetect_makes():
    from stages.probe import probe
    from stages.split import SplitConfig, detect_shots

    facts, _ = probe(SAMPLES / "flash_3.mp4")
    unguarded = detect_shots(str(SAMPLES / "flash_3.mp4"), SplitConfig(flash_guard=False), facts["width"],
                             facts["height"], facts["fps"])
    guarded = detect_shots(str(SAMPLES / "flash_3.mp4"), SplitConfig(), facts["width"], facts["height"], facts["fps"])
    assert len(unguarded.ranges) > 1  # PySceneDetect alone cuts at the white frames
    assert len(guarded.ranges) == 1 and guarded.flash_cuts == [s for s, _ in unguarded.ranges[1:]]


def _split_cuts_6shots(tmp_path, workdir, split_yaml: str):
    """`curate local` over cuts_6shots with these split settings (no filter); the ok clips."""
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "cuts.mp4").write_bytes((SAMPLES / "cuts_6shots.mp4").read_bytes())
    cfg = write_config(tmp_path / "c.yaml", f"split:\n{split_yaml}filter:\n  enabled: false\n")
    curate("local", "-w", workdir, "-i", inp, "-c", cfg, "--no-progress")
    return pl.read_parquet(workdir / "metadata" / "clips.parquet").filter(pl.col("status") == "ok")


def test_local_run_records_boundaries(tmp_path, workdir):
    table = _split_cuts_6shots(tmp_path, workdir, "  max_s: 1.5\n")
    shots = table.filter(pl.col("boundary") == "shot")["start_frame"].to_list()
    assert shots == [60, 120, 170, 230, 275]
    assert set(table["boundary"]) == {"start", "shot", "window"}
    assert (table["clip_duration_s"] <= 1.5).all()


def test_cut_writes_clip_files_of_the_right_length(tmp_path, workdir):
    table = _split_cuts_6shots(tmp_path, workdir, "  cut: true\n  max_s: 2.0\n")
    assert table.height >= 6
    for row in table.iter_rows(named=True):
        assert row["clip_duration_s"] <= 2.0
        out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                              "-show_entries", "stream=nb_read_frames,width,height", "-of", "json", row["clip_path"]],
                             capture_output=True, text=True, check=True)
        stream = json.loads(out.stdout)["streams"][0]
        assert abs(int(stream["nb_read_frames"]) - (row["end_frame"] - row["start_frame"])) <= 1
        assert (stream["width"], stream["height"]) == (640, 360)
    assert {r for r in table["boundary"]} == {"start", "shot", "window"}


def test_variable_frame_rate_times_are_presentation_times():
    """On a VFR file, clip start times are the PTS of the start frame, not index / fps."""
    from stages.probe import probe
    from stages.split import SplitConfig, detect_shots

    path = DATA / "katna_elephantsdream_vfr.mp4"
    with open(DATA / "katna_elephantsdream_vfr.cuts.csv") as fh:
        truth = {int(r["frame"]): float(r["time_s"]) for r in csv.DictReader(fh)}
    facts, _ = probe(path)
    shots = detect_shots(str(path), SplitConfig(), facts["width"], facts["height"], facts["fps"])
    found = [a for a, _ in shots.ranges[1:]]
    matched = [c for c in found if c in truth]
    assert len(matched) >= 3, found
    for cut in matched:
        assert shots.time_at(cut, facts["fps"]) == pytest.approx(truth[cut], abs=0.002)
        assert abs(cut / facts["fps"] - truth[cut]) > 0.01  # index / fps would be off


def test_fast_pixel_distance_equals_pyscenedetect_formula():
    """The OpenCV distance the detector uses gives PySceneDetect's numpy value exactly."""
    import numpy as np

    from stages.shots import mean_pixel_distance

    rng = np.random.default_rng(7)
    for shape in [(144, 256), (454, 256), (1, 3)]:
        a, b = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
        reference = np.sum(np.abs(a.astype(np.int32) - b.astype(np.int32))) / float(a.size)
        assert mean_pixel_distance(a, b) == reference


def test_videos_split_at_once_give_what_one_at_a_time_gives(tmp_path):
    """Split runs two videos at once on two cores (on a local worker, the second in a process it forked at
    its start; under `curate run`, on two threads of the task or from a fork server), and fetch probes
    two files at once: the same rows, in input order, and the same records for the later stages, byte
    for byte, as one at a time."""
    inp = tmp_path / "in"
    inp.mkdir()
    for path in (SAMPLES / "cuts_6shots.mp4", SAMPLES / "flash_3.mp4", DATA / "noflash.mp4", DATA / "pan_4px.mp4"):
        (inp / path.name).write_bytes(path.read_bytes())
    cfg = write_config(tmp_path / "c.yaml", "")
    parts = {}
    for threads in ("1", "2"):
        workdir = tmp_path / f"run-{threads}"
        curate("local", "-w", workdir, "-i", inp, "-c", cfg, "--parts", "1", "--workers", "1", "--no-progress",
               env={"CURATE_THREADS": threads})
        split_dir = workdir / "stages" / "split"
        (part,) = split_dir.glob("part-*[0-9].parquet")
        (records,) = split_dir.glob("*.handoff.parquet")
        fetched = pl.concat([pl.read_parquet(p) for p in sorted((workdir / "stages" / "fetch").glob("*.parquet"))],
                            how="diagonal")
        parts[threads] = (pl.read_parquet(part), pl.read_parquet(records), fetched)
        log = "".join(p.read_text() for p in (workdir / "logs" / "split").glob("*.out"))
        order = [line.split()[-1] for line in log.splitlines() if line.startswith("split[0] ") and "/4 " in line]
        # the longest first, so that a short one ends the task (two at once: either may log first)
        assert len(order) == 4 and "cuts_6shots.mp4" in order[:int(threads)], order
        done = json.loads((workdir / "markers" / "split" / "00000.done").read_text())
        assert done["videos_in_processes"] == int(threads) - 1
    # The same split as one `curate run` task (a Slurm task's process): this small part on two threads,
    # and with `video_processes: always` the second video in a process of a fork server.
    for name, mode, in_processes in (("threads", "auto", 0), ("server", "always", 1)):
        again = tmp_path / f"run-{name}"
        shutil.copytree(tmp_path / "run-1", again)
        for leftover in ("markers/split", "stages/split"):
            shutil.rmtree(again / leftover)
        plan = (again / "run.yaml").read_text()
        assert plan.count("video_processes: auto") == 1
        (again / "run.yaml").write_text(plan.replace("video_processes: auto", f"video_processes: {mode}"))
        curate("run", "-w", again, "--stage", "split", "--index", "0", env={"CURATE_THREADS": "2"})
        done = json.loads((again / "markers" / "split" / "00000.done").read_text())
        assert done["videos_in_processes"] == in_processes
        split_dir = again / "stages" / "split"
        parts[name] = (pl.read_parquet(next(split_dir.glob("part-*[0-9].parquet"))),
                       pl.read_parquet(next(split_dir.glob("*.handoff.parquet"))), parts["1"][2])
    rows_1, records_1, fetched_1 = parts["1"]
    assert fetched_1.height > 4 and fetched_1.equals(parts["2"][2])  # fetch probes and hashes files at once too
    for rows, records, _ in (parts["2"], parts["threads"], parts["server"]):
        assert rows_1.height > 4 and rows_1["relpath"].to_list() == rows["relpath"].to_list()
        assert rows_1.drop("path").equals(rows.drop("path"))
        assert records_1.height > 0 and records_1.equals(records)


def test_scenedetect_imported_without_its_ffmpeg_probe():
    """stages.scenedetect_quiet imports PySceneDetect without running the ffmpeg it looks for at import
    (its own clip writer then reports no ffmpeg, which curate never uses), and puts PATH back."""
    code = ("import os, shutil, sys; path = os.environ['PATH']; import stages.scenedetect_quiet; "
            "import scenedetect.output.video as video; "
            "assert os.environ['PATH'] == path and shutil.which('ffmpeg'); "
            "assert video._FFMPEG_PATH is None, video._FFMPEG_PATH")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_missing_pyscenedetect_stops_before_any_work(tmp_path, workdir):
    proc = local_with_import_blocked(tmp_path, workdir, "scenedetect")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "split.kind: pyscenedetect needs PySceneDetect" in proc.stderr and "scripts/setup.sh" in proc.stderr
    assert not (workdir / "markers").exists() or not any((workdir / "markers").rglob("*.done"))
