"""Calibration (quantiles, retention, report), thresholds files at export, --calibration runs, and
the offline upload target."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse

import numpy as np
import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, write_config

from curate import calibrate

# Flash and motion on the real samples and test footage; score's default quality scorer.
CONFIG = """
filter: {ocr: {enabled: false}, nsfw: {enabled: false}, motion: {min_score: 0.001}}
"""


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    inputs = root / "in"
    inputs.mkdir()
    for src in [*SAMPLES.glob("*.mp4"), DATA / "still_4s.mp4", DATA / "pan_4px.mp4", DATA / "noflash.mp4"]:
        (inputs / src.name).write_bytes(src.read_bytes())
    cfg = write_config(root / "c.yaml", CONFIG)
    curate("local", "-w", root / "run", "-i", inputs, "-c", cfg, "--parts", "2", "--no-progress")
    return root


def clips_of(run) -> pl.DataFrame:
    parts = sorted((run / "stages" / "score").glob("part-*.parquet")) if (run / "stages").is_dir() else []
    if not parts:
        parts = sorted(p for p in run.rglob("score/part-*.parquet"))
    table = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    return table.filter((pl.col("status") == "ok") & pl.col("clip_id").is_not_null())


def test_quantiles_and_retention_equal_numpy_and_the_report_is_written(scored):
    run = scored / "run"
    doc = json.loads(curate("calibrate", "-w", run, "--quantiles", "0.1,0.5,0.9", "--json").stdout)
    clips = clips_of(run)
    assert doc["clips"] == clips.height > 10
    by_score = {row["score"]: row for row in doc["quantiles"]}
    for score in ("motion_score", "flash_ratio", "quality", "sharpness", "clip_duration_s"):
        values = clips[score].drop_nulls().to_numpy()
        expected = np.quantile(values, [0.1, 0.5, 0.9])
        got = [by_score[score][k] for k in ("q10", "q50", "q90")]
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), score
    assert by_score["motion_score"]["threshold"] == 0.001
    retention = {row["check"]: row for row in doc["retention"]}
    motion = clips["motion_score"].to_numpy()
    kept = ~(motion < 0.001)
    assert retention["motion (min_score 0.001)"]["kept_clips"] == int(kept.sum())
    hours = clips["clip_duration_s"].to_numpy()[kept].sum() / 3600
    assert retention["motion (min_score 0.001)"]["kept_hours"] == pytest.approx(hours, abs=1e-4)
    flash = clips["flash_ratio"].to_numpy()
    together = kept & ~(flash > 0.02)
    assert retention["all together"]["kept_clips"] == int(together.sum()) < clips.height
    meta = run / "metadata"
    assert pl.read_parquet(meta / "calibration.parquet").height == len(doc["quantiles"])
    measured = [score for score, row in by_score.items() if row["count"]]  # OCR and NSFW are off here
    charts = sorted(p.stem for p in (meta / "calibration").glob("*.svg"))
    assert charts == sorted(measured) and doc["charts"] == [str(meta / "calibration" / f"{s}.svg") for s in measured]
    page = (meta / "calibration.html").read_text()
    assert page.count("<svg ") == 2 * len(measured)  # a histogram and a kept-share curve per measured score
    assert "just below" in page and "data:image/jpeg;base64," in page  # thumbnails either side of a threshold


def _section(page: str, score: str) -> str:
    start = page.index(f"<h3 id='{score}'>")
    end = page.find("<h3 id=", start + 1)
    return page[start:end if end > 0 else None]


def test_curves_thumbnails_and_axes_of_every_score(scored):
    run = scored / "run"
    doc = json.loads(curate("calibrate", "-w", run, "--json").stdout)
    clips = clips_of(run)
    page = (run / "metadata" / "calibration.html").read_text()
    motion = np.sort(clips["motion_score"].drop_nulls().to_numpy())
    # The kept-share curve: what a minimum at each threshold keeps, equal to counting the clips.
    curves = pl.read_parquet(doc["curves"]).filter((pl.col("score") == "motion_score") & (pl.col("direction") == "min"))
    assert curves.height == 200
    for row in curves.iter_rows(named=True):
        assert row["kept_share"] == pytest.approx((motion >= row["threshold"]).mean(), abs=1e-12)
    section = _section(page, "motion_score")
    assert f"min_score 0.001: {(motion >= 0.001).mean():.0%} kept" in section  # the current threshold, marked
    # Nearest on each side, over every clip: the largest below and the smallest at or above the threshold.
    below_side, above_side = section.split("<b>just below</b>")[1].split("<b>just above</b>")
    shown_below = [float(v) for v in re.findall(r"motion_score ([-\d.e]+)</figcaption>", below_side)]
    shown_above = [float(v) for v in re.findall(r"motion_score ([-\d.e]+)</figcaption>", above_side)]
    assert shown_below == pytest.approx(sorted(motion[motion < 0.001], reverse=True)[:4], rel=1e-3)
    assert shown_above == pytest.approx(sorted(motion[motion >= 0.001])[:4], rel=1e-3)
    for score in (row["score"] for row in doc["quantiles"] if row["count"]):
        part = _section(page, score)
        assert part.count("data:image/jpeg;base64,") >= 1, score  # thumbnails for every score, thresholds or not
        assert f">{score}</text>" in part and ">clips</text>" in part and ">clips kept</text>" in part  # axes
    # Each thumbnail says which file and when, and links to that stretch of it.
    quality = _section(page, "quality")
    captions = re.findall(r"<b>([^<]+)</b><br>([\d.]+)-([\d.]+) s<br>q(\d\d)", quality)
    links = re.findall(r"<a href='([^']+)'><img", quality)
    assert len(captions) == len(links) >= 3
    for (name, start, end, _), link in zip(captions, links):
        target, _, fragment = link.partition("#t=")
        assert (run / "metadata" / urllib.parse.unquote(target)).resolve().name == name
        row = clips.filter((pl.col("relpath") == name) & ((pl.col("start_s") - float(start)).abs() < 0.01))
        assert row.height == 1 and fragment == f"{float(start):.2f},{float(end):.2f}"


def test_a_sample_keeps_nearest_clips_from_all(scored):
    run = scored / "run"
    doc = json.loads(curate("calibrate", "-w", run, "--sample-size", "4", "--json").stdout)
    assert doc["clips"] == 4 and all(row["count"] <= 4 for row in doc["quantiles"])
    page = (run / "metadata" / "calibration.html").read_text()
    assert "a random sample of 4 of" in page
    motion = np.sort(clips_of(run)["motion_score"].drop_nulls().to_numpy())
    above = _section(page, "motion_score").split("<b>just above</b>")[1]
    shown = [float(v) for v in re.findall(r"motion_score ([-\d.e]+)</figcaption>", above)]
    assert shown == pytest.approx(sorted(motion[motion >= 0.001])[:4], rel=1e-3)


def test_an_all_zero_score_gets_a_sane_axis():
    from curate.decisions import above
    from curate.svgchart import value_range

    check = above("ocr", "text_area_max", 0.02, "text_area_threshold")
    charts = calibrate.score_charts("text_area_max", np.zeros(13), [check])
    ticks = [float(t) for t in re.findall(r"text-anchor='middle'>([-\d.e]+)</text>", charts.histogram)]
    assert min(ticks) == 0 and max(ticks) >= 0.02  # from 0 to past the threshold: no -0.4..0.4 around the bar
    lo, hi = value_range([0.0], [0.02])
    assert lo == 0 and 0.02 < hi < 0.03
    assert "text_area_threshold 0.02: 100% kept" in charts.curve
    assert value_range([0.0, 0.0], []) == (0.0, 1.0)


def test_export_with_a_thresholds_file_reruns_nothing(scored, tmp_path):
    run = scored / "run"
    before = json.loads(curate("export", "-w", run, "--json").stdout)
    stricter = tmp_path / "t.yaml"  # a thresholds file, not a config: written as it is
    stricter.write_text("filter: {motion: {min_score: 0.01}, flash: {max_flash_ratio: 1}}\n")
    after = json.loads(curate("export", "-w", run, "--thresholds", stricter, "-o", tmp_path / "t.parquet",
                              "--json").stdout)
    clips = clips_of(run)
    assert after["clips_ok"] == int((~(clips["motion_score"].to_numpy() < 0.01)).sum()) != before["clips_ok"]
    wrong = tmp_path / "w.yaml"
    wrong.write_text("filter: {motion: {size: 320}}\n")
    proc = curate("export", "-w", run, "--thresholds", wrong, check=False)
    assert proc.returncode != 0 and "filter.motion.size is not a threshold" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_calibration_run_stops_after_score_on_enough_indices(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for src in SAMPLES.glob("*.mp4"):
        (inputs / src.name).write_bytes(src.read_bytes())
    cfg = write_config(tmp_path / "c.yaml", CONFIG + "caption: {enabled: true, provider: api, url: "
                                                     "'http://127.0.0.1:9/never'}\n")
    doc = json.loads(curate("local", "-w", tmp_path / "run", "-i", inputs, "-c", cfg, "--parts", "4",
                            "--calibration", "--sample-size", "1", "--no-progress", "--json").stdout)
    assert doc["clips"] >= 1 and doc["html"].endswith("calibration.html")
    status = json.loads(curate("status", "-w", tmp_path / "run", "--json").stdout)
    assert list(status["stages"]) == ["fetch", "split", "filter", "score"]  # caption is left out of this run
    assert status["stages"]["score"]["done"] == [0]  # one unit per part: index 0 holds the one clip asked for
    assert status["stages"]["fetch"]["not_started"] == [1, 2, 3]


def test_submit_calibration_sends_fetch_to_score_for_the_first_indices(tmp_path):
    proc = curate("submit", "-w", tmp_path / "run", "-i", SAMPLES, "--calibration", "--sample-size", "2",
                  "--parts", "4", "--dry-run")
    jobs = [line for line in proc.stdout.splitlines() if line.startswith("#SBATCH --job-name=")]
    assert [j.split("curate-")[1] for j in jobs] == ["fetch", "split", "filter", "score", "dedup", "merge"]
    assert "#SBATCH --array=0-1" in proc.stdout and "--array=0-3" not in proc.stdout  # one video per part
    assert "curate calibrate" in proc.stderr


def test_upload_to_a_directory_encodes_at_the_training_size(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "cuts.mp4").write_bytes((SAMPLES / "cuts_6shots.mp4").read_bytes())
    cfg = write_config(tmp_path / "c.yaml", CONFIG + "clips: {resize: '256', fit: crop}\nupload: {enabled: true}\n")
    skipped = json.loads(curate("local", "-w", tmp_path / "run", "-i", inputs, "-c", cfg, "--skip-upload",
                                "--no-progress", "--json").stdout)
    assert not (tmp_path / "run" / "dataset").exists() and skipped["clips_ok"] >= 2
    doc = json.loads(curate("local", "-w", tmp_path / "run", "-c", cfg, "--no-progress", "--json").stdout)
    dataset = tmp_path / "run" / "dataset"
    assert doc["uploaded_to"] == str(dataset) and "uploaded_to" not in skipped
    table = pl.read_parquet(doc["table"])
    uploaded = table["file_name"].drop_nulls().to_list()
    assert len(uploaded) == doc["clips_ok"] == skipped["clips_ok"]
    for rel in uploaded:
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                                "stream=width,height", "-of", "csv=p=0", str(dataset / rel)],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert probe == "256,256", rel
    assert sorted(pl.read_parquet(dataset / "metadata.parquet")["file_name"]) == sorted(uploaded)


def test_a_clip_upload_cannot_write_says_why_in_its_row(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("cuts_6shots.mp4", "bikes.mp4"):
        (inputs / name).write_bytes((SAMPLES / name).read_bytes())
    cfg = write_config(tmp_path / "c.yaml", CONFIG + "clips: {resize: '256'}\nupload: {enabled: true}\n")
    curate("local", "-w", tmp_path / "run", "-i", inputs, "-c", cfg, "--skip-upload", "--no-progress")
    broken = inputs / "bikes.mp4"  # same size, so the manifest still matches; no longer a video
    broken.write_bytes(b"\0" * broken.stat().st_size)
    doc = json.loads(curate("local", "-w", tmp_path / "run", "-c", cfg, "--no-progress", "--json").stdout)
    table = pl.read_parquet(doc["table"]).filter(pl.col("keep"))
    bikes, cuts = (table.filter(pl.col("relpath") == n) for n in ("bikes.mp4", "cuts_6shots.mp4"))
    assert bikes.height and bikes["file_name"].is_null().all()
    assert all(e.startswith("upload: clip file not written") for e in bikes["upload_error"])
    assert cuts["file_name"].is_not_null().all() and cuts["upload_error"].is_null().all()
