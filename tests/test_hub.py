"""Hugging Face in and out through the real huggingface_hub client, against a real HTTP server on
127.0.0.1 that speaks the Hub's endpoints (tests/fake_hub.py). Nothing talks to the internet."""

from __future__ import annotations

import io
import json
import tarfile

import polars as pl
import pytest
from conftest import SAMPLES, curate, write_config
from fake_hub import FakeHub

FAST = """
split: {kind: none, max_s: null}
filter: {ocr: {enabled: false}, nsfw: {enabled: false}, motion: {enabled: false}}
score: {enabled: false}
"""


def tar_of(*names: str, padding: int = 0) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            tar.add(SAMPLES / name, arcname=f"clips/{name}")
        if padding:  # a non-video member: makes the shard big enough for the client to stream it in chunks
            info = tarfile.TarInfo("clips/padding.bin")
            info.size = padding
            tar.addfile(info, io.BytesIO(b"\0" * padding))
    return buffer.getvalue()


@pytest.fixture
def hub():
    with FakeHub() as server:
        server.add_dataset("org/videos", {
            "README.md": b"# videos\n",
            # 24 MB: the client writes in 10 MB chunks, so a drop halfway leaves a partial file to resume
            "data/train-000.tar": tar_of("bikes.mp4", "carphone_pristine.mp4", padding=24_000_000),
            "data/train-001.tar": tar_of("cuts_6shots.mp4"),
            "raw/flash_3.mp4": (SAMPLES / "flash_3.mp4").read_bytes(),
            **{f"extra/{i:03d}.txt": b"x" for i in range(60)},  # more than one listing page
        })
        yield server


def hub_env(hub, tmp_path) -> dict:
    return {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
            "HF_TOKEN": "hf_test_token_not_real", "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_shards_lists_a_paginated_repo_and_writes_a_shard_list(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    listing = tmp_path / "shards.txt"
    doc = json.loads(curate("shards", "--repo", "org/videos", "--pattern", "*.tar", "--output", listing, "--json",
                            env=env).stdout)
    assert [f["path"] for f in doc["files"]] == ["data/train-000.tar", "data/train-001.tar"]
    assert doc["files"][0]["size"] == len(hub.repos["org/videos"].files["data/train-000.tar"])
    everything = json.loads(curate("shards", "--repo", "org/videos", "--json", env=env).stdout)
    assert len(everything["files"]) == 64 and hub.count("GET", "/tree/main") >= 3  # two pages of 50, twice
    text = listing.read_text()
    assert text.startswith("# curate shards --repo org/videos") and "data/train-001.tar  # " in text
    missing = curate("shards", "--repo", "org/nothing", env=env, check=False)
    assert missing.returncode != 0 and "org/nothing" in missing.stderr and "Traceback" not in missing.stderr


def test_fetch_downloads_each_index_own_shards_through_faults(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    listing = tmp_path / "shards.txt"
    curate("shards", "--repo", "org/videos", "--pattern", "data/*.tar", "--output", listing, env=env)
    cfg = write_config(tmp_path / "c.yaml", FAST + f"input: {{hf_repo: org/videos, shards_file: {listing}}}\n"
                                                   "upload: {enabled: true, cleanup_after_upload: true}\n")
    # the first download answers 500, the next drops the connection halfway: both are survived
    hub.faults["resolve"] = ["500", "drop"]  # one worker: both land on index 0's 24 MB shard
    doc = json.loads(curate("local", "-w", tmp_path / "run", "-c", cfg, "-j", "1", "--no-progress", "--json",
                            env=env).stdout)
    assert doc["failed"] == {} and doc["clips_ok"] == 3
    table = pl.read_parquet(doc["table"])
    sources = sorted(table["source"].unique().to_list())
    assert sources[0] == "hf://datasets/org/videos@main/data/train-000.tar::clips/bikes.mp4"
    ranged = [r for m, p, r in hub.requests if m == "GET" and "/resolve/" in p and r]
    assert ranged == ["bytes=10485760-"]  # the dropped download resumed after the 10 MB it had written
    # downloaded archives are gone once extracted, and the extracted media once uploaded
    assert not list((tmp_path / "run" / "downloads").rglob("*.tar"))
    assert not list((tmp_path / "run" / "media").rglob("*.mp4"))
    uploaded = sorted(p.relative_to(tmp_path / "run" / "dataset").as_posix()
                      for p in (tmp_path / "run" / "dataset").rglob("*.mp4"))
    assert uploaded == ["data/data/train-000.tar/clips/bikes.mp4",
                        "data/data/train-000.tar/clips/carphone_pristine.mp4",
                        "data/data/train-001.tar/clips/cuts_6shots.mp4"]


def test_fetch_uses_the_hf_cache_and_plain_video_files(hub, tmp_path):
    import os
    import subprocess
    import sys

    env = hub_env(hub, tmp_path)
    cached = subprocess.run(
        [sys.executable, "-c", "from huggingface_hub import hf_hub_download; print(hf_hub_download("
         "'org/videos', 'data/train-001.tar', repo_type='dataset'))"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()
    before = hub.count("GET", "/resolve/main/data/train-001.tar")
    cfg = write_config(tmp_path / "c.yaml", FAST + "input: {hf_repo: org/videos, "
                                                   "shards: [data/train-001.tar, raw/flash_3.mp4]}\n")
    doc = json.loads(curate("local", "-w", tmp_path / "run", "-c", cfg, "--no-progress", "--json", env=env).stdout)
    assert doc["failed"] == {} and doc["videos"] == 2
    assert hub.count("GET", "/resolve/main/data/train-001.tar") == before  # read from the cache, not downloaded
    assert os.path.exists(cached)  # and never deleted: the cache is the user's
    table = pl.read_parquet(doc["table"])
    offline = {**env, "HF_HUB_OFFLINE": "1"}  # the cached shard alone, and not one request to the Hub
    before = len(hub.requests)
    cfg_offline = write_config(tmp_path / "o.yaml",
                               FAST + "input: {hf_repo: org/videos, shards: [data/train-001.tar]}\n")
    alone = json.loads(curate("local", "-w", tmp_path / "offline", "-c", cfg_offline, "--no-progress", "--json",
                              env=offline).stdout)
    assert alone["failed"] == {} and alone["clips_ok"] == 1 and len(hub.requests) == before
    missing = write_config(tmp_path / "m.yaml", FAST + "input: {hf_repo: org/videos, shards: [data/train-000.tar]}\n")
    proc = curate("local", "-w", tmp_path / "offline2", "-c", missing, "--no-progress", env=offline, check=False)
    assert proc.returncode != 0 and "not in the HF cache" in proc.stderr
    raw = table.filter(pl.col("relpath") == "raw/flash_3.mp4")
    assert raw["reason"][0].startswith("flash") and raw["path"][0].startswith(str(tmp_path / "run" / "media"))


def test_a_missing_repo_file_stops_before_any_work(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    cfg = write_config(tmp_path / "c.yaml", FAST + "input: {hf_repo: org/videos, shards: [data/nope.tar]}\n")
    proc = curate("local", "-w", tmp_path / "run", "-c", cfg, "--no-progress", env=env, check=False)
    assert proc.returncode != 0 and "has no file data/nope.tar" in proc.stderr and "curate shards" in proc.stderr
    assert not (tmp_path / "run" / "manifests").exists() or not list((tmp_path / "run" / "manifests").iterdir())


UPLOAD = FAST + """
upload: {enabled: true, target_repo: org/curated, chunk_size_mb: 0.000001}
"""


def test_upload_commits_in_chunks_and_an_interrupted_upload_resumes_without_duplicates(hub, tmp_path):
    env = hub_env(hub, tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("bikes.mp4", "carphone_pristine.mp4", "cuts_6shots.mp4"):
        (inputs / name).write_bytes((SAMPLES / name).read_bytes())
    cfg = write_config(tmp_path / "c.yaml", UPLOAD)
    # the first commit lands, the second fails every retry: the task fails with the first one kept
    hub.faults["commit"] = ["ok"] + ["500"] * 5
    first = curate("local", "-w", tmp_path / "run", "-i", inputs, "-c", cfg, "--no-progress", "--json", env=env,
                   check=False)
    assert first.returncode == 1 and "commit 2/4 to org/curated" in first.stdout + first.stderr
    repo = hub.repos["org/curated"]
    assert repo.private and len(repo.files) == 1
    second = json.loads(curate("local", "-w", tmp_path / "run", "-c", cfg, "--no-progress", "--json",
                               env=env).stdout)
    assert second["failed"] == {}
    committed = [path for commit in repo.commits for path in commit["files"]]
    # three videos, the index's curation table, the root metadata.parquet and the card, each sent once
    assert len(committed) == len(set(committed)) == 6
    assert sorted(repo.files) == ["README.md", "curation/part-00000.parquet", "data/bikes.mp4",
                                  "data/carphone_pristine.mp4", "data/cuts_6shots.mp4", "metadata.parquet"]
    assert repo.files["data/bikes.mp4"] == (SAMPLES / "bikes.mp4").read_bytes()  # whole videos, no resize: as is
    meta = pl.read_parquet(io.BytesIO(repo.files["metadata.parquet"]))
    assert set(meta["file_name"]) == {"data/bikes.mp4", "data/carphone_pristine.mp4", "data/cuts_6shots.mp4"}
    curation = pl.read_parquet(io.BytesIO(repo.files["curation/part-00000.parquet"]))
    assert set(curation.filter(pl.col("keep"))["file_name"]) == set(meta["file_name"])
    final = pl.read_parquet(second["table"])
    assert final["file_name"].drop_nulls().len() == 3


def test_upload_without_a_token_stops_before_any_work(hub, tmp_path):
    env = {**hub_env(hub, tmp_path), "HF_TOKEN": ""}
    cfg = write_config(tmp_path / "c.yaml", UPLOAD)
    proc = curate("local", "-w", tmp_path / "run", "-i", SAMPLES, "-c", cfg, "--no-progress", env=env, check=False)
    assert proc.returncode != 0 and "set HF_TOKEN" in proc.stdout + proc.stderr
    assert "org/curated" not in hub.repos


def test_the_shipped_shard_lists_read_as_shards_files():
    from conftest import REPO

    from curate.config import InputConfig
    from curate.manifest import read_shard_list

    hub_list = read_shard_list(InputConfig(hf_repo="org/videos",
                                           shards_file=str(REPO / "manifests/hf-shards.example.txt")))
    assert hub_list == [f"data/train-0000{i}.tar" for i in range(4)]
    local = read_shard_list(InputConfig(shards_file=str(REPO / "manifests/local-shards.example.txt")))
    assert local[2] == "/shared/datasets/videos/shard-000002.tar.gz" and len(local) == 3
