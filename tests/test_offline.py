"""Whole-video filtering on a scratch tree (split.kind none) and exports that mirror the input tree."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, ffmpeg, write_config

FAST = "filter:\n  ocr: {enabled: false}\n  nsfw: {enabled: false}\n"


def probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                          "stream=width,height,nb_read_frames,r_frame_rate:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    return {**doc["streams"][0], "duration": float(doc["format"]["duration"])}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Nested folders of real and generated videos, a broken file and a clip that the filters drop."""
    root = tmp_path_factory.mktemp("scratch") / "ego"
    (root / "day1" / "cam0").mkdir(parents=True)
    (root / "day2").mkdir()
    (root / "day1" / "cam0" / "carphone.mp4").write_bytes((SAMPLES / "carphone_pristine.mp4").read_bytes())
    (root / "day1" / "pan.mp4").write_bytes((DATA / "pan_4px.mp4").read_bytes())
    (root / "day2" / "flash.mp4").write_bytes((SAMPLES / "flash_3.mp4").read_bytes())
    (root / "day2" / "broken.mp4").write_bytes(b"not a video at all")
    # 40 s of moving test pattern: longer than split.max_s, kept whole
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=40", "-pix_fmt", "yuv420p",
           str(root / "day2" / "long.mp4"))
    return root


def offline(tree, out, *args, check=True):
    proc = curate("offline-filter", "-i", tree, "-o", out, "-c", write_config(out.parent / f"{out.name}.yaml", FAST),
                  "--no-progress", "--json", *args, check=check)
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else None


def test_link_mode_mirrors_the_tree_and_a_rerun_skips(tree, tmp_path):
    out = tmp_path / "out"
    _, doc = offline(tree, out)
    kept = {"day1/cam0/carphone.mp4", "day1/pan.mp4", "day2/long.mp4"}
    linked = {p.relative_to(out / "data").as_posix() for p in out.rglob("*.mp4") if ".curate-run" not in p.parts}
    assert linked == kept
    for rel in kept:  # the same file, not a copy (auto: whole videos the clip settings leave as they are)
        assert os.path.samefile(out / "data" / rel, tree / rel)
    meta = pl.read_parquet(out / "curation" / "clips.parquet")
    assert set(meta["relpath"]) == kept | {"day2/flash.mp4", "day2/broken.mp4"}
    assert meta.filter(pl.col("relpath") == "day2/long.mp4")["clip_duration_s"][0] == pytest.approx(40, abs=0.1)
    assert meta.filter(pl.col("relpath") == "day2/broken.mp4")["status"][0] == "failed"
    assert meta.filter(pl.col("relpath") == "day2/flash.mp4")["reason"][0].startswith("flash:")
    assert sorted(meta["file_name"].drop_nulls()) == sorted(f"data/{rel}" for rel in kept)
    dataset = pl.read_parquet(out / "metadata.parquet")  # what videofolder joins: the kept videos only
    assert sorted(dataset["file_name"]) == sorted(meta["file_name"].drop_nulls()) and "status" not in dataset.columns
    assert not (out / "metadata.jsonl").exists() and (out / "README.md").read_text().startswith("---\n")
    assert doc["videos"] == 5 and doc["clips_ok"] == 3 and doc["files_written"] == 3
    assert doc["by_reason"] == {"failed: not a readable media file": 1, "filtered: flash": 1}
    _, again = offline(tree, out)
    assert again["files_written"] == 0 and again["files_skipped"] == 3


def test_copy_and_encode_modes(tree, tmp_path):
    copied = tmp_path / "copied"
    offline(tree, copied, "--copy-mode", "copy")
    src, dst = tree / "day1" / "pan.mp4", copied / "data" / "day1" / "pan.mp4"
    assert not os.path.samefile(src, dst) and dst.read_bytes() == src.read_bytes()
    encoded = tmp_path / "encoded"
    (tmp_path / "encoded.yaml").write_text(FAST)
    cfg = write_config(tmp_path / "enc.yaml", FAST + "clips:\n  resize: '256'\n  fit: pad\n  crf: 30\n")
    proc = curate("offline-filter", "-i", tree, "-o", encoded, "-c", cfg, "--copy-mode", "encode", "--no-progress",
                  "--json")
    assert json.loads(proc.stdout)["files_written"] == 3
    for rel in ("day1/pan.mp4", "day2/long.mp4", "day1/cam0/carphone.mp4"):
        source, written = probe(tree / rel), probe(encoded / "data" / rel)
        assert (written["width"], written["height"]) == (256, 256)
        one_frame = 1 / eval(source["r_frame_rate"])
        assert abs(written["duration"] - source["duration"]) <= one_frame + 1e-3, rel


def finished(out):
    return [p for p in out.glob("data/day*/**/*.mp4") if not p.name.startswith(".")]


def test_an_interrupted_export_leaves_no_half_file_and_resumes(tree, tmp_path):
    out = tmp_path / "out"
    offline(tree, out, "--copy-mode", "none")  # the run and the metadata, no files yet
    cfg = write_config(tmp_path / "slow.yaml", FAST + "split:\n  kind: none\n  max_s: null\n"
                       "clips:\n  codec: libx265\n  preset: slow\n  crf: 20\n")
    workdir = out / ".curate-run"
    curate("local", "-w", workdir, "-c", cfg, "--no-progress")  # same run, new clip settings
    cmd = [sys.executable, "-m", "curate", "export", "-w", str(workdir), "--output-dir", str(out),
           "--copy-mode", "encode", "--json"]
    export = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(out.glob("data/day*/**/.*tmp*")) and not finished(out):
        assert time.time() < deadline and export.poll() is None, "the export never started writing"
        time.sleep(0.02)
    os.kill(export.pid, signal.SIGKILL)
    export.wait()
    for path in finished(out):  # whatever has its final name is whole
        assert probe(path)["duration"] > 0.5
    doc = json.loads(curate("export", "-w", workdir, "--output-dir", out, "--copy-mode", "encode", "--json").stdout)
    assert doc["files_written"] + doc["files_skipped"] == 3 and doc["files_failed"] == 0
    assert len(finished(out)) == 3


def test_link_mode_refuses_parts_of_videos_and_split_none_windows(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "cuts.mp4").write_bytes((SAMPLES / "cuts_6shots.mp4").read_bytes())
    workdir = tmp_path / "run"
    curate("local", "-w", workdir, "-i", inputs, "-c", write_config(tmp_path / "c.yaml", FAST), "--no-progress")
    proc = curate("export", "-w", workdir, "--output-dir", tmp_path / "out", "--copy-mode", "link", check=False)
    assert proc.returncode == 2 and "parts of longer videos" in proc.stderr
    assert "--copy-mode auto or encode" in proc.stderr
    # the default, auto, encodes clips cut out of a longer video
    auto = json.loads(curate("export", "-w", workdir, "--output-dir", tmp_path / "auto", "--json").stdout)
    assert auto["copy_mode"] == "auto" and auto["files_written"] == auto["clips_ok"] > 1
    # split.kind none with a max_s: a 12.6 s video becomes equal windows, no decode needed
    cfg = write_config(tmp_path / "w.yaml", FAST + "split:\n  kind: none\n  max_s: 5\n")
    curate("local", "-w", tmp_path / "run2", "-i", inputs, "-c", cfg, "--no-progress")
    table = pl.read_parquet(tmp_path / "run2" / "metadata" / "clips.parquet")
    assert table["boundary"].to_list() == ["start", "window", "window"]
    assert table["clip_duration_s"].to_list() == pytest.approx([4.2, 4.2, 4.16], abs=0.05)


def test_links_across_filesystems_fall_back_to_symlinks(tree, tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem here")
    out = shm / f"curate-test-{os.getpid()}"
    try:
        proc, doc = offline(tree, out, "--workdir", str(tmp_path / "run"))
        linked = out / "data" / "day1" / "pan.mp4"
        assert linked.is_symlink() and os.path.samefile(linked, tree / "day1" / "pan.mp4")
        text = curate("export", "-w", tmp_path / "run", "--output-dir", out / "again", "--copy-mode", "link").stdout
        assert "symlinks: hard links are not possible" in text
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=False)
