"""dedup on real footage: copies made with ffmpeg are found, distinct material is not merged; the
run-wide step locally and on Slurm (dry run); against an earlier release; the grouping at scale's shape."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, ffmpeg, write_config

BIKES = SAMPLES / "bikes.mp4"  # 10 s, six real shots
DREAM = DATA / "katna_elephantsdream_vfr.mp4"  # 16 s, variable frame rate, five shots
STATIC = DATA / "katna_cat_static.mp4"  # 30 s of one static camera: three 10 s windows, different moments

# Every copy the issue lists, each made from real footage.
COPIES = {
    "bikes_half_crf40.mp4": ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-c:v", "libx264", "-crf", "40"],
    "bikes_crop8.mp4": ["-vf", "crop=trunc(iw*0.92/2)*2:trunc(ih*0.92/2)*2:iw*0.04:ih*0.04", "-c:v", "libx264"],
    "bikes_drop3.mp4": ["-vf", "select='mod(n+1\\,3)'", "-fps_mode", "vfr", "-c:v", "libx264"],
    "bikes_letterbox.mp4": ["-vf", "pad=iw:trunc(ih*1.4/2)*2:0:trunc(ih*0.2/2)*2:black", "-c:v", "libx264"],
    "bikes_rotated.mp4": ["-c", "copy", "-metadata:s:v:0", "rotate=90"],
}
CONFIG = "filter: {enabled: false}\ndedup:\n  enabled: true\n"


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("copies")
    shutil.copy(BIKES, d / "bikes.mp4")
    shutil.copy(BIKES, d / "bikes_bytecopy.mp4")
    for name, args in COPIES.items():
        ffmpeg("-i", str(BIKES), *args, "-an", str(d / name))
    shutil.copy(DREAM, d / "dream.mp4")
    ffmpeg("-ss", "2.3", "-t", "4", "-i", str(DREAM), "-c:v", "libx264", "-an", str(d / "dream_segment.mp4"))
    shutil.copy(STATIC, d / "cat_static.mp4")
    return d


@pytest.fixture(scope="module")
def release(copies, tmp_path_factory) -> Path:
    """One run over every copy, in three parts: dedup groups across them."""
    root = tmp_path_factory.mktemp("release")
    cfg = write_config(root / "c.yaml", CONFIG)
    curate("local", "-w", root / "run", "-i", copies, "-c", cfg, "--parts", "3", "--no-progress", "-j", "2",
           timeout=900)
    return root / "run"


def clips(run: Path) -> pl.DataFrame:
    table = pl.read_parquet(run / "metadata" / "clips.parquet")
    return table.filter(pl.col("clip_id").is_not_null() & pl.col("status").is_in(["ok", "duplicate"]))


def covering(table: pl.DataFrame, relpath: str, start: float, end: float) -> list[dict]:
    """The clips of `relpath` that overlap [start, end) by more than half a second."""
    rows = table.filter(pl.col("relpath") == relpath).to_dicts()
    return [r for r in rows if min(end, r["end_s"]) - max(start, r["start_s"]) > 0.5]


def test_every_copy_is_found_and_distinct_material_is_not_merged(release):
    table = clips(release)
    assert set(table["part"].unique()) == {0, 1, 2}  # the groups span every index of the run
    originals = table.filter(pl.col("relpath") == "bikes.mp4").sort("start_s").to_dicts()
    assert len(originals) == 5
    # different shots of one video: five groups
    assert len({c["dup_group"] for c in originals}) == 5 and None not in {c["dup_group"] for c in originals}
    for name in ["bikes_bytecopy.mp4", *COPIES]:
        copy = table.filter(pl.col("relpath") == name).to_dicts()
        assert copy, name
        for clip in copy:  # in the group of the original clip it copies (of one of them, if a cut was missed)
            groups = {c["dup_group"] for c in covering(table, "bikes.mp4", clip["start_s"], clip["end_s"])}
            assert clip["dup_group"] in groups, (name, clip["start_s"], clip["dup_group"], groups)
    segment = table.filter(pl.col("relpath") == "dream_segment.mp4").to_dicts()
    assert segment
    for clip in segment:  # a segment cut out of a longer video: found inside the clip it came from
        (original,) = covering(table, "dream.mp4", clip["start_s"] + 2.3, clip["end_s"] + 2.3)
        assert clip["dup_group"] == original["dup_group"] is not None
        assert {clip["status"], original["status"]} == {"ok", "duplicate"}
    # precision: the other shots of the longer video, another video and a static camera's windows
    dream = table.filter(pl.col("relpath") == "dream.mp4")
    assert dream.filter(pl.col("dup_group").is_not_null()).height == 1
    static = table.filter(pl.col("relpath") == "cat_static.mp4")
    assert static.height == 3 and static["dup_group"].null_count() == 3 and set(static["status"]) == {"ok"}
    bikes_groups = set(table.filter(pl.col("relpath").str.starts_with("bikes"))["dup_group"])
    assert not bikes_groups & set(table.filter(~pl.col("relpath").str.starts_with("bikes"))["dup_group"].drop_nulls())
    # one clip kept per group, the best by quality; the others say of which, how and how far
    for group, members in table.filter(pl.col("dup_group").is_not_null()).group_by("dup_group"):
        kept = members.filter(pl.col("status") == "ok")
        assert kept.height == 1 and kept["clip_id"][0] == group[0]
        assert kept["quality"][0] == members["quality"].max()
        dups = members.filter(pl.col("status") == "duplicate")
        assert (dups["duplicate_of"] == group[0]).all()
        assert dups["dup_kind"].is_in(["exact", "near"]).all()
        assert (dups["dup_distance"] <= 14).all()
        assert dups["reason"].str.starts_with(f"duplicate of {group[0]} (").all()
    exact = table.filter(pl.col("dup_kind") == "exact")
    assert set(exact["relpath"]) <= {"bikes.mp4", "bikes_bytecopy.mp4"} and (exact["dup_distance"] == 0).all()
    # calibration says how many clips dedup removed
    note = json.loads(curate("calibrate", "-w", release, "--json").stdout)["notes"]["dedup"]
    assert note["clips"] == table.filter(pl.col("status") == "duplicate").height > 0 and note["max_bits"] == 14
    # the signatures table of the run, for later releases
    signatures = pl.read_parquet(release / "metadata" / "signatures.parquet")
    assert set(signatures["clip_id"]) == set(table["clip_id"])
    assert signatures["file_sha256"].null_count() == 0 and (signatures["hashes"].list.len() > 0).all()


def test_against_an_earlier_release(release, copies, tmp_path, workdir):
    new = tmp_path / "v2"
    new.mkdir()
    shutil.copy(copies / "bikes_crop8.mp4", new / "bikes_again.mp4")
    shutil.copy(DATA / "mma_skeleton_fixed_camera.mp4", new / "fresh.mp4")  # not in the release
    cfg = write_config(tmp_path / "c.yaml", CONFIG + f"  against: [{release}]\n")
    curate("local", "-w", workdir, "-i", new, "-c", cfg, "--no-progress")
    table = clips(workdir)
    again = table.filter(pl.col("relpath") == "bikes_again.mp4")
    assert again.height == 5 and set(again["status"]) == {"duplicate"}
    kept_before = set(clips(release).filter(pl.col("status") == "ok")["clip_id"])
    for target in again["duplicate_of"]:
        name, _, clip_id = target.partition(":")
        assert name == release.name and clip_id in kept_before
    assert set(table.filter(pl.col("relpath") == "fresh.mp4")["status"]) == {"ok"}


def test_bad_against_stops_before_any_work(tmp_path, workdir):
    cfg = write_config(tmp_path / "c.yaml", CONFIG + f"  against: [{tmp_path / 'nothing.parquet'}]\n")
    (tmp_path / "in").mkdir()
    shutil.copy(BIKES, tmp_path / "in" / "a.mp4")
    proc = curate("local", "-w", workdir, "-i", tmp_path / "in", "-c", cfg, "--no-progress", check=False)
    assert proc.returncode == 2 and "dedup.against" in proc.stderr and "no such signatures table" in proc.stderr
    assert not (workdir / "stages" / "fetch").exists()


def test_left_out_index_joins_later_without_changing_decisions(tmp_path, workdir):
    """Index 1 has not passed score when dedup runs: it is left out and said so; once it has, the next
    dedup adds it, and what index 0 decided stands."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(BIKES, inputs / "a.mp4")
    shutil.copy(BIKES, inputs / "b.mp4")
    cfg = write_config(tmp_path / "c.yaml", CONFIG)
    curate("manifest", "-w", workdir, "-i", inputs, "-c", cfg, "--parts", "2")
    for stage in ("fetch", "split", "score"):
        curate("run", "-w", workdir, "--stage", stage, "--index", "0")
    out = curate("run", "-w", workdir, "--stage", "dedup", "--index", "0").stdout
    assert "1 indices left out" in out
    assert (workdir / "markers" / "dedup" / "00000.done").is_file()
    assert not (workdir / "markers" / "dedup" / "00001.done").exists()
    first = pl.read_parquet(workdir / "stages" / "dedup" / "part-00000.parquet")
    assert set(first.filter(pl.col("clip_id").is_not_null() & (pl.col("status") != "dropped"))["status"]) == {"ok"}
    for stage in ("fetch", "split", "score"):
        curate("run", "-w", workdir, "--stage", stage, "--index", "1")
    out = curate("run", "-w", workdir, "--stage", "dedup", "--index", "1").stdout
    assert "1 done before" in out
    assert pl.read_parquet(workdir / "stages" / "dedup" / "part-00000.parquet").equals(first)
    second = pl.read_parquet(workdir / "stages" / "dedup" / "part-00001.parquet").filter(pl.col("status") != "dropped")
    assert set(second.filter(pl.col("clip_id").is_not_null())["status"]) == {"duplicate"}
    assert set(second["duplicate_of"].drop_nulls()) == set(first["clip_id"].drop_nulls()) & set(
        first.filter(pl.col("status") == "ok")["clip_id"])
    assert set(second["dup_kind"].drop_nulls()) == {"exact"}
    again = curate("run", "-w", workdir, "--stage", "dedup", "--index", "0").stdout
    assert "already done" in again


def test_slurm_dry_run_chains_one_dedup_job(tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    for i in range(5):
        (videos / f"v{i}.mp4").write_bytes(b"")
    cfg = write_config(tmp_path / "c.yaml", "slurm:\n  max_array_size: 3\ndedup:\n  enabled: true\n"
                                            f"upload:\n  enabled: true\n  target_dir: {tmp_path / 'out'}\n")
    out = curate("submit", "-c", cfg, "-w", tmp_path / "run", "-i", videos, "--parts", "5", "--dry-run").stdout
    scripts = re.split(r"^# --- ", out, flags=re.MULTILINE)[1:]
    names = [s.split(":")[0] for s in scripts]
    assert names == ["fetch", "fetch", "split", "split", "filter", "filter", "score", "score", "dedup",
                     "upload", "upload", "merge"]
    dedup = scripts[8]
    assert "#SBATCH --array" not in dedup and "#SBATCH --job-name=curate-dedup" in dedup
    assert "#SBATCH --dependency=afterany:<job id of score chunk 0>:<job id of score chunk 1>" in dedup
    assert re.search(r"-m curate run --workdir \S+ --stage dedup --index 0 --plan", dedup)
    for upload in scripts[9:11]:
        assert "#SBATCH --dependency=afterok:<job id of dedup>" in upload
    assert "#SBATCH --dependency=afterany:<job id of upload chunk 0>:<job id of upload chunk 1>" in scripts[11]


def test_grouping_finds_planted_copies_and_nothing_else():
    from stages.dedup_groups import Signatures, components, near_duplicates

    rng = np.random.default_rng(0)
    clips = [list(rng.integers(0, 2**63, size=12, dtype=np.uint64)) for _ in range(400)]
    times = [[i * 0.25 for i in range(12)] for _ in clips]
    flips = lambda h: h ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, 5, replace=False)))  # noqa: E731
    for source in range(0, 40, 2):  # a copy of clip 2k at a few bits, and one of its middle half
        clips.append([flips(h) for h in clips[source]])
        times.append(times[source])
        clips.append([flips(h) for h in clips[source][3:9]])
        times.append([t - 0.75 for t in times[source][3:9]])
    sig = Signatures.from_lists([[int(v) for v in c] for c in clips], times)
    pairs, distance = near_duplicates(sig, max_bits=14)
    label = components(sig.clips, pairs)
    for n, source in enumerate(range(0, 40, 2)):
        assert label[400 + 2 * n] == label[source] == label[401 + 2 * n]
    groups = {int(g) for g in label if (label == g).sum() > 1}
    assert len(groups) == 20 and (distance <= 10).all()  # a copy against a copy: twice 5 bits at most


def test_semantic_duplicates_from_the_clip_embeddings_of_laion_aes(tmp_path, workdir):
    """With score.laion_aes on, its CLIP embedding of each clip is kept, and `semantic: true` groups
    clips by cosine (exact and near off here, so only the embeddings can link them)."""
    pytest.importorskip("open_clip")
    from test_score import laion_heads, tiny_clip

    config, weights = tiny_clip(tmp_path)
    linear, _ = laion_heads(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(SAMPLES / "carphone_pristine.mp4", inputs / "carphone.mp4")
    ffmpeg("-i", str(SAMPLES / "carphone_pristine.mp4"), "-vf", "scale=88:72", "-c:v", "libx264", "-crf", "30",
           str(inputs / "carphone_small.mp4"))
    cfg = write_config(tmp_path / "c.yaml", (
        "filter: {enabled: false}\n"
        f"score:\n  laion_aes: {{enabled: true, frames: 2, clip_model: tiny-clip-test, clip_config: {config}, "
        f"clip: {{path: {weights}}}, head: {{path: '{linear}'}}}}\n"
        "dedup: {enabled: true, exact: false, near: false, semantic: true, min_cosine: 0.9}\n"))
    curate("local", "-w", workdir, "-i", inputs, "-c", cfg, "--no-progress", timeout=600)
    table = clips(workdir).sort("relpath")
    assert table.height == 2 and set(table["status"]) == {"ok", "duplicate"}
    dup = table.filter(pl.col("status") == "duplicate").row(0, named=True)
    kept = table.filter(pl.col("status") == "ok").row(0, named=True)
    assert dup["duplicate_of"] == kept["clip_id"] and dup["dup_kind"] == "semantic"
    a, b = (np.frombuffer(r["clip_embedding"], dtype=np.float16).astype(np.float32) for r in (dup, kept))
    assert a.shape == (768,) and abs(float(np.linalg.norm(a)) - 1) < 0.01
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cosine >= 0.9 and abs((1 - dup["dup_distance"]) - cosine) < 0.01
    assert "semantic, cosine" in dup["reason"]
    signatures = pl.read_parquet(workdir / "metadata" / "signatures.parquet")
    assert signatures["embedding"].null_count() == 0


def test_against_a_release_on_the_hub(release, copies, tmp_path, workdir):
    """`hf://owner/name` reads the release's metadata/signatures.parquet through the real HF client
    (tests/fake_hub.py on 127.0.0.1); duplicate_of names the repo."""
    from fake_hub import FakeHub

    new = tmp_path / "v2"
    new.mkdir()
    shutil.copy(copies / "bikes_half_crf40.mp4", new / "again.mp4")
    with FakeHub() as hub:
        hub.add_dataset("org/v1", {"metadata/signatures.parquet":
                                   (release / "metadata" / "signatures.parquet").read_bytes()})
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        cfg = write_config(tmp_path / "c.yaml", CONFIG + "  against: ['hf://org/v1']\n")
        curate("local", "-w", workdir, "-i", new, "-c", cfg, "--no-progress", env=env)
    again = clips(workdir)
    assert again.height == 5 and set(again["status"]) == {"duplicate"}
    assert all(d.startswith("org/v1:") for d in again["duplicate_of"])
