"""Mid-stream corruption costs only the frames it hides: 20 KB of garbage in the middle of a 10 s
H.264 video (MP4, and MPEG-TS, whose demuxer resyncs) keeps the clips before the damage, reports
where decoding broke, and resumes at the next keyframe after it."""

import json
import random

import polars as pl
import pytest
from conftest import curate, ffmpeg, write_config

GARBAGE = 20_000
FPS = 25


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """bad.mp4 and bad.ts: the same noisy 10 s testsrc (a keyframe a second), garbage in the middle."""
    d = tmp_path_factory.mktemp("corrupt")
    inputs = d / "in"
    inputs.mkdir()
    ffmpeg("-f", "lavfi", "-i", f"testsrc=duration=10:size=320x240:rate={FPS},noise=alls=12:allf=t",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", str(FPS), "-pix_fmt", "yuv420p", str(d / "good.mp4"))
    ffmpeg("-i", str(d / "good.mp4"), "-c", "copy", str(d / "good.ts"))
    for suffix in ("mp4", "ts"):
        data = bytearray((d / f"good.{suffix}").read_bytes())
        middle = len(data) // 2
        data[middle:middle + GARBAGE] = random.Random(0).randbytes(GARBAGE)
        (inputs / f"bad.{suffix}").write_bytes(bytes(data))
    return inputs


def test_clips_around_the_damage_are_kept(damaged, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", "split:\n  max_s: 2\nfilter:\n  enabled: false\n")
    doc = json.loads(curate("local", "-w", tmp_path / "run", "-i", damaged, "-c", cfg, "--no-progress",
                            "--json").stdout)
    assert doc["failed"] == {} and "failed" not in doc["by_status"]
    table = pl.read_parquet(tmp_path / "run" / "metadata" / "clips.parquet")
    for name in ("bad.mp4", "bad.ts"):
        rows = table.filter(pl.col("relpath") == name).sort("start_s").to_dicts()
        assert rows and all(r["status"] == "ok" and r["clip_id"] for r in rows), rows
        # The damage is reported on the video's clips: where decoding broke and where it resumed.
        (reason,) = {r["reason"] for r in rows}
        assert reason.startswith("decoding broke after ") and "resumed at " in reason, reason
        broke = float(reason.split("after ")[1].split(" s")[0])
        resumed = float(reason.split("resumed at ")[1].split(" s")[0])
        first = rows[0]["start_s"]  # MPEG-TS timestamps start at 1.4 s
        assert first + 3 < broke < resumed < first + 8
        assert all(r["decoded_frames"] < r["num_frames"] == 250 for r in rows)
        before = [r for r in rows if r["end_s"] <= broke + 1.5 / FPS]
        after = [r for r in rows if r["start_s"] >= resumed]
        assert len(before) >= 2 and len(after) >= 1 and len(before) + len(after) == len(rows)
        assert after[0]["boundary"] == "resume" and after[0]["start_s"] == resumed
        assert after[-1]["end_s"] == pytest.approx(first + 10, abs=0.05)  # decoded to the end
        assert sum(r["end_frame"] - r["start_frame"] for r in rows) == rows[0]["decoded_frames"]


def test_decode_loop_fails_only_the_damaged_clip(damaged):
    """filter and score decode through the same loop: the clip with lost frames says so, the
    others are decoded whole."""
    from stages.decode import scan_clips

    clips = [{"clip_id": str(i), "start_s": float(i), "end_s": i + 2.0} for i in range(0, 10, 2)]
    scans = {s.clip["clip_id"]: s for s in scan_clips(str(damaged / "bad.mp4"), clips, [])}
    damaged_clips = [c for c, s in scans.items() if s.damage]
    assert len(damaged_clips) == 1, {c: (s.frames, s.damaged) for c, s in scans.items()}
    assert scans[damaged_clips[0]].damaged.startswith("decoding broke after ")
    assert all(s.frames == 2 * FPS for c, s in scans.items() if c not in damaged_clips)
    assert int(damaged_clips[0]) < 8  # clips after the damage were decoded too
