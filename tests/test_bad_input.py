"""Every bad or unusual input ends as a row with a reason; the tasks themselves succeed."""

import json

import polars as pl
from conftest import curate


def test_every_bad_input_is_a_row_with_a_reason(bad_media, workdir):
    proc = curate("local", "-w", workdir, "-i", bad_media, "--parts", "3", "--no-progress", "--json")
    doc = json.loads(proc.stdout)
    assert doc["failed"] == {}
    table = pl.read_parquet(workdir / "metadata" / "clips.parquet")
    videos = {}
    for row in table.iter_rows(named=True):
        videos.setdefault(row["relpath"], []).append(row)
    assert set(videos) == {"zero.mp4", "truncated.mp4", "notes.mp4", "audio_only.mp4", "odd_161x121.mp4",
                           "portrait.mp4", "rotated.mp4", "good.mp4", "truncated_faststart.mp4",
                           "thumb_8x8.mp4", "strip_200x6.mp4"}

    def failure(name):
        (row,) = videos[name]
        assert row["status"] == "failed" and row["clip_id"] is None
        return row["reason"]

    assert failure("zero.mp4") == "empty file (0 bytes)"
    assert failure("notes.mp4").startswith("not a readable media file: Invalid data")
    assert failure("audio_only.mp4") == "no video stream (audio only)"
    assert failure("truncated.mp4").startswith("not a readable media file")
    # Index up front, data cut in half: the clips of the decodable half are kept, and the row says
    # how far decoding got.
    half = videos["truncated_faststart.mp4"]
    assert {r["status"] for r in half} <= {"ok", "filtered"}
    assert all(r["decoded_frames"] < r["num_frames"] == 250 for r in half)
    assert max(r["end_frame"] for r in half) == half[0]["decoded_frames"]

    def clips(name):  # clips that were scored (kept, filtered by a threshold, or a duplicate of another)
        return [r for r in videos[name] if r["status"] in ("ok", "filtered", "duplicate")]

    odd = clips("odd_161x121.mp4")
    assert odd and odd[0]["width"] == 161 and odd[0]["height"] == 121
    portrait = clips("portrait.mp4")
    assert portrait and (portrait[0]["width"], portrait[0]["height"]) == (144, 176)
    rotated = clips("rotated.mp4")
    assert rotated and rotated[0]["rotation"] in (90, 270)
    assert (rotated[0]["width"], rotated[0]["height"]) == (144, 176)  # as displayed
    assert len(clips("good.mp4")) == 6
    # frames too small for OpenCV's optical flow are measured like any other (it raised on them)
    for name in ("thumb_8x8.mp4", "strip_200x6.mp4"):
        tiny = clips(name)
        assert tiny and all(r["motion_score"] is not None and r["motion_score"] == r["motion_score"] for r in tiny)
    assert all(r["motion_score"] is not None for r in odd + portrait + rotated)
    # dedup (on by default): the odd-sized re-encode of carphone is in the group of good.mp4's carphone shot
    assert {r["dup_group"] for r in odd} & {r["dup_group"] for r in clips("good.mp4")} - {None}

    status = json.loads(curate("status", "-w", workdir, "--json").stdout)
    for stage in ("fetch", "split", "filter", "score", "dedup"):
        assert status["stages"][stage]["done"] == [0, 1, 2]
        assert status["stages"][stage]["failed"] == {}


def test_empty_input_dir_is_a_clear_error(tmp_path, workdir):
    (tmp_path / "empty").mkdir()
    proc = curate("local", "-w", workdir, "-i", tmp_path / "empty", check=False)
    assert proc.returncode == 2 and "no videos" in proc.stderr and "Traceback" not in proc.stderr


def test_in_process_probe_says_what_ffprobe_says(bad_media, monkeypatch):
    """fetch probes with PyAV in its own process (5 ms, not ffprobe's 130 ms a file); the facts and
    reasons must be ffprobe's own, on good, odd, rotated and broken files alike."""
    from conftest import SAMPLES

    from stages import probe as probing

    files = sorted(bad_media.iterdir()) + sorted(SAMPLES.glob("*.mp4"))
    in_process = {f.name: probing.probe(f) for f in files}
    read_here = {f.name for f in files if probing._probe_pyav(f) is not None}
    monkeypatch.setattr(probing, "_probe_pyav", lambda path: None)  # ffprobe for every file
    assert {f.name: probing.probe(f) for f in files} == in_process
    assert {"rotated.mp4", "odd_161x121.mp4", "portrait.mp4", "good.mp4", "bikes.mp4"} <= read_here
    assert in_process["rotated.mp4"][0]["rotation"] == 90
