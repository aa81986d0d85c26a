"""The published dataset, loaded as a trainer loads it, with the real `datasets` and `webdataset`
libraries: a directory (videofolder), the local Hub test server (tests/fake_hub.py) and webdataset
shards. Rows are the kept clips, scores and captions are joined, frames decode (torchcodec, the
backend the README names), no published file holds an absolute local path, the card is the Hub's
YAML header."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import polars as pl
import pytest
from conftest import SAMPLES, curate, ffmpeg, write_config
from fake_hub import FakeHub
from fake_llm import FakeCaptionServer

pytest.importorskip("datasets")
pytest.importorskip("webdataset")
pytest.importorskip("torchcodec")

KEY = "sk-test-caption-0123456789"
BASE = """
filter: {ocr: {enabled: false}, nsfw: {enabled: false}}
caption: {enabled: true, model: test/vision-model, api_key_env: TEST_CAPTION_KEY, base_url: URL/v1}
upload:
  enabled: true
  license: cc-by-4.0
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout") / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "cuts_6shots.mp4", root / "cuts.mp4")  # several clips cut out of one video
    shutil.copy(SAMPLES / "bikes.mp4", root / "sub" / "bikes.mp4")
    # a moving picture with a sound track: audio is kept (AAC) by default
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(root / "tone.mp4"))
    return root


WDS = "  format: webdataset\n  shard_size_mb: 0.2\n"


def run_upload(tmp_path, inputs, extra: str, env: dict | None = None, workdir=None, parts: int = 1):
    with FakeCaptionServer() as llm:
        cfg = write_config(tmp_path / "c.yaml", BASE.replace("URL", llm.url) + extra)
        proc = curate("local", "-w", workdir or tmp_path / "run", "-i", inputs, "-c", cfg, "--no-progress", "--json",
                      "--parts", str(parts), env={"TEST_CAPTION_KEY": KEY, **(env or {})})
    return json.loads(proc.stdout)


def loader(script: str, env: dict | None = None) -> dict:
    """Run a loader in a fresh interpreter (the Hub client reads HF_ENDPOINT when it is imported)."""
    full = {**os.environ, "HF_DATASETS_CACHE": env.pop("cache") if env and "cache" in env else os.environ.get(
        "HF_DATASETS_CACHE", "")}
    full.update(env or {})
    full = {k: v for k, v in full.items() if v}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=full,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


VIDEOFOLDER = """
import json, sys
from datasets import load_dataset
ds = load_dataset(*ARGS, split="train")
rows = [{k: v for k, v in r.items() if k != "video"} for r in ds]
frame = ds[0]["video"].get_frame_at(0).data
print(json.dumps({"rows": rows, "columns": ds.column_names, "frame": list(frame.shape)}))
"""


def published_text(root) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def kept_of(root) -> pl.DataFrame:
    curation = pl.concat([pl.read_parquet(p) for p in sorted((root / "curation").glob("*.parquet"))],
                         how="diagonal_relaxed")
    return curation.filter(pl.col("status") == "ok")


def check_card(root, fmt: str, rows: int):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(root / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["size_categories"] == ["n<1K"]
    assert data["task_categories"] == ["text-to-video"]
    assert [c["config_name"] for c in data["configs"]] == ["default"]
    assert f"**{rows} clips" in card.text and "## Thresholds" in card.text and "## Score distributions" in card.text
    return card


def test_directory_layout_loads_with_videofolder_scores_captions_audio_and_buckets(tmp_path, inputs):
    doc = run_upload(tmp_path, inputs, '  buckets: {resolutions: [128, 240], aspects: ["1:1", "4:3", "16:9"], '
                     'frames: [16, 48]}\nclips: {resize: "256", fit: pad}\n', parts=3)
    root = tmp_path / "run" / "dataset"
    kept = kept_of(root)
    assert doc["clips_ok"] == kept.height > 5
    # three indices, each its own curation table; the root table names the kept clips of all three
    assert len(list((root / "curation").glob("part-*.parquet"))) == 3
    assert sorted(pl.read_parquet(root / "metadata.parquet")["clip_id"]) == sorted(kept["clip_id"])
    got = loader(VIDEOFOLDER.replace("*ARGS", f"'videofolder', data_dir={str(root)!r}"))
    rows = {r["clip_id"]: r for r in got["rows"]}
    assert sorted(rows) == sorted(kept["clip_id"])  # one row per kept clip
    assert got["frame"] == [3, 256, 256]  # decoded with torchcodec, written at 256 padded
    for clip in kept.iter_rows(named=True):
        row = rows[clip["clip_id"]]
        assert row["caption"] == clip["caption"] and row["caption"].startswith("caption of")
        assert row["quality"] == pytest.approx(clip["quality"]) and row["end_s"] > row["start_s"]
        assert row["bucket"] == clip["bucket"] and "status" not in row and "path" not in row
        assert (root / clip["file_name"]).is_file() and clip["file_name"].startswith(f"data/{clip['bucket']}/")
    tone = [r for r in rows.values() if r["relpath"] == "tone.mp4"]
    assert tone and all(r["has_audio"] for r in tone) and not any(r["has_audio"] for r in rows.values()
                                                                   if r["relpath"] != "tone.mp4")
    assert {r["bucket"] for r in rows.values()} >= {"240p_1x1_48f"}
    # the curation table has every row, the ones left out with their reason
    curation = pl.concat([pl.read_parquet(p) for p in (root / "curation").glob("*.parquet")], how="diagonal_relaxed")
    assert curation.height > kept.height and curation.filter(pl.col("status") != "ok")["reason"].is_not_null().all()
    text = published_text(root)
    assert str(tmp_path) not in text and str(inputs) not in text and "/tmp/" not in text
    card = check_card(root, "files", kept.height)
    assert "## Buckets" in card.text and "240p_1x1_48f" in card.text and "have an audio track" in card.text
    # the curation table is outside the dataset's files, and loads as parquet
    from datasets import load_dataset
    assert load_dataset("parquet", data_files=str(root / "curation" / "*.parquet"), split="train",
                        cache_dir=str(tmp_path / "cache")).num_rows == curation.height


def test_webdataset_shards_load_with_webdataset_and_datasets_and_resume(tmp_path, inputs):
    doc = run_upload(tmp_path, inputs, WDS)
    root = tmp_path / "run" / "dataset"
    kept = kept_of(root)
    index = json.loads((root / "shards.json").read_text())
    assert len(index["shardlist"]) >= 2 and sum(s["nsamples"] for s in index["shardlist"]) == kept.height
    assert all((root / s["url"]).is_file() for s in index["shardlist"])
    got = loader(f"""
    import json, webdataset as wds
    index = json.load(open({str(root / 'shards.json')!r}))
    urls = [{str(root) + '/'!r} + s["url"] for s in index["shardlist"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    print(json.dumps([{{"key": s["__key__"], "meta": json.loads(s["json"]), "txt": s["txt"].decode(),
                       "mp4": len(s["mp4"])}} for s in samples]))
    """)
    assert sorted(s["meta"]["clip_id"] for s in got) == sorted(kept["clip_id"])
    by_id = {c["clip_id"]: c for c in kept.iter_rows(named=True)}
    for s in got:
        clip = by_id[s["meta"]["clip_id"]]
        assert s["txt"] == clip["caption"] and s["meta"]["quality"] == pytest.approx(clip["quality"]) and s["mp4"]
    ds = loader(f"""
    import json
    from datasets import load_dataset
    ds = load_dataset({str(root)!r}, split="train")
    frame = ds[0]["mp4"].get_frame_at(0).data
    ids = sorted(r["clip_id"] for r in ds["json"])
    print(json.dumps({{"rows": ds.num_rows, "ids": ids, "frame": list(frame.shape)}}))
    """)
    assert ds["rows"] == kept.height and ds["ids"] == sorted(kept["clip_id"]) and ds["frame"][0] == 3
    assert str(tmp_path) not in published_text(root)
    check_card(root, "webdataset", kept.height)
    before = {p: p.stat().st_mtime_ns for p in (root / "data").glob("*.tar")}
    shutil.rmtree(tmp_path / "run" / "stages" / "upload")  # the upload runs again: the same shards, none resent
    for marker in (tmp_path / "run").rglob("*"):
        if "upload" in marker.name and marker.is_file() and "markers" in marker.parts:
            marker.unlink()
    again = run_upload(tmp_path, inputs, WDS)
    assert again["clips_ok"] == doc["clips_ok"]
    assert {p: p.stat().st_mtime_ns for p in (root / "data").glob("*.tar")} == before


def test_hub_upload_loads_with_load_dataset_from_the_repo(tmp_path, inputs):
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
               "HF_TOKEN": "hf_test_token_not_real", "HF_HUB_DISABLE_TELEMETRY": "1"}
        run_upload(tmp_path, inputs, "  target_repo: org/curated\n", env=env)
        files = hub.repos["org/curated"].files
        assert "metadata.parquet" in files and "README.md" in files and "curation/part-00000.parquet" in files
        for name, data in files.items():
            assert str(tmp_path).encode() not in data and str(inputs).encode() not in data, name
        kept = pl.read_parquet(__import__("io").BytesIO(files["metadata.parquet"]))
        got = loader(VIDEOFOLDER.replace("*ARGS", "'org/curated'"),
                     env={**env, "cache": str(tmp_path / "ds-cache")})
        assert sorted(r["clip_id"] for r in got["rows"]) == sorted(kept["clip_id"]) and got["frame"][0] == 3
        assert all(r["caption"] for r in got["rows"])


def test_export_output_dir_auto_mode_resize_and_videofolder(tmp_path, inputs):
    work = tmp_path / "run"
    with FakeCaptionServer() as llm:
        cfg = write_config(tmp_path / "c.yaml", BASE.replace("URL", llm.url).split("upload:")[0])
        curate("local", "-w", work, "-i", inputs, "-c", cfg, "--no-progress", env={"TEST_CAPTION_KEY": KEY})
    out = tmp_path / "out"
    doc = json.loads(curate("export", "-w", work, "--output-dir", out, "--resize", "256", "--fit", "crop",
                            "--json").stdout)
    assert doc["copy_mode"] == "auto" and doc["files_failed"] == 0 and doc["files_written"] == doc["clips_ok"]
    got = loader(VIDEOFOLDER.replace("*ARGS", f"'videofolder', data_dir={str(out)!r}"))
    assert len(got["rows"]) == doc["clips_ok"] and got["frame"] == [3, 256, 256]
    assert all(r["caption"] for r in got["rows"])
    assert str(tmp_path) not in published_text(out)
    # --config with a clips: section: audio dropped, so even the whole video with a sound track is re-encoded
    quiet = write_config(tmp_path / "q.yaml", "clips: {audio: drop}\n")
    doc = json.loads(curate("export", "-w", work, "--output-dir", tmp_path / "quiet", "--config", quiet,
                            "--json").stdout)
    dataset = pl.read_parquet(tmp_path / "quiet" / "metadata.parquet")
    assert dataset.height == doc["clips_ok"] and not dataset["has_audio"].any()
    loud = pl.read_parquet(out / "metadata.parquet")
    assert loud.filter(pl.col("relpath") == "tone.mp4")["has_audio"].all()  # kept by default
    for name in dataset.filter(pl.col("relpath") == "tone.mp4")["file_name"]:
        streams = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                                  str(tmp_path / "quiet" / name)], capture_output=True, text=True).stdout.split()
        assert streams == ["video"]
    bad = write_config(tmp_path / "t.yaml", "clips: {resize: '512'}\n")
    proc = curate("export", "-w", work, "--thresholds", bad, check=False)
    assert proc.returncode != 0 and "--resize" in proc.stderr and "Traceback" not in proc.stderr


def test_offline_filter_output_loads_with_videofolder(tmp_path, inputs):
    out = tmp_path / "kept"
    cfg = write_config(tmp_path / "c.yaml", "filter: {ocr: {enabled: false}, nsfw: {enabled: false}}\n")
    doc = json.loads(curate("offline-filter", "-i", inputs, "-o", out, "-c", cfg, "--no-progress", "--json").stdout)
    # the run directory inside the output (.curate-run) is hidden from the loader
    got = loader(VIDEOFOLDER.replace("*ARGS", f"'videofolder', data_dir={str(out)!r}"))
    assert sorted(r["relpath"] for r in got["rows"]) == sorted(
        pl.read_parquet(out / "curation" / "clips.parquet").filter(pl.col("status") == "ok")["relpath"])
    assert len(got["rows"]) == doc["clips_ok"] > 0 and got["frame"][0] == 3
    assert str(tmp_path) not in published_text(out)
    for row in got["rows"]:  # whole videos, linked as they are
        assert os.path.samefile(out / "data" / row["relpath"], inputs / row["relpath"])
