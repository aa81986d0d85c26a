import json

import polars as pl
import pytest
from conftest import curate

from curate.config import InputConfig
from curate.errors import CurateError
from curate.manifest import Unit, balance_by_bytes, plan_parts, write_manifest
from curate.rundir import RunDir


def _files(tmp_path, sizes):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for i, size in enumerate(sizes):
        (d / ("sub" if i % 2 else "") / f"v{i}.mp4").write_bytes(b"x" * size)
    (d / "readme.txt").write_text("not a video")
    return d


def test_balanced_by_bytes_not_count():
    sizes = [900, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    units = [Unit(str(i), "file", f"/v{i}", f"v{i}", b) for i, b in enumerate(sizes)]
    parts = balance_by_bytes(units, 2)
    loads = sorted(sum(u.bytes for u in p) for p in parts)
    assert loads == [900, 900]
    assert sorted(len(p) for p in parts) == [1, 9]


def test_dir_manifest_parts_and_stable_ids(tmp_path):
    d = _files(tmp_path, [5000, 4000, 3000, 2000, 1000, 1000])
    parts = plan_parts(InputConfig(dir=str(d), parts=3))
    assert len(parts) == 3
    assert sorted(u.relpath for p in parts for u in p) == sorted(
        ["v0.mp4", "sub/v1.mp4", "v2.mp4", "sub/v3.mp4", "v4.mp4", "sub/v5.mp4"])
    loads = [sum(u.bytes for u in p) for p in parts]
    assert max(loads) - min(loads) <= 1000
    again = plan_parts(InputConfig(dir=str(d), parts=3))
    assert [[u.video_id for u in p] for p in parts] == [[u.video_id for u in p] for p in again]


def test_part_size_sets_part_count(tmp_path):
    d = _files(tmp_path, [1000] * 6)
    assert len(plan_parts(InputConfig(dir=str(d), part_size=2000))) == 3


def test_refuses_to_rebuild_a_different_manifest(tmp_path):
    d = _files(tmp_path, [1000, 2000, 3000])
    run = RunDir.at(tmp_path / "run")
    first = write_manifest(run, InputConfig(dir=str(d), parts=2))
    assert write_manifest(run, InputConfig(dir=str(d), parts=2)) == first  # same input: kept
    (d / "new.mp4").write_bytes(b"y" * 10)
    with pytest.raises(CurateError, match="--rebuild-manifest"):
        write_manifest(run, InputConfig(dir=str(d), parts=2))
    rebuilt = write_manifest(run, InputConfig(dir=str(d), parts=2), rebuild=True)
    assert rebuilt["num_units"] == 4
    rows = pl.concat([pl.read_parquet(run.manifest_part(i)) for i in range(rebuilt["num_parts"])])
    assert rows.height == 4 and set(rows.columns) >= {"video_id", "source", "bytes", "kind"}


def test_shards_and_shards_file(tmp_path):
    import tarfile

    shards = []
    for i in range(5):
        p = tmp_path / f"shard-{i}.tar"
        with tarfile.open(p, "w"):
            pass
        shards.append(str(p))
    listing = tmp_path / "shards.txt"
    listing.write_text("# my shards\n" + "\n".join(shards) + "\n")
    parts = plan_parts(InputConfig(shards_file=str(listing), shards_per_part=2))
    assert [len(p) for p in parts] == [2, 2, 1]
    assert all(u.kind == "archive" for p in parts for u in p)
    with pytest.raises(CurateError, match="does not exist"):
        plan_parts(InputConfig(shards=[str(tmp_path / "missing.tar")]))


def test_manifest_cli_json(tmp_path):
    d = _files(tmp_path, [100, 200, 300, 400])
    out = curate("manifest", "-w", tmp_path / "run", "-i", d, "--parts", "2", "--json")
    info = json.loads(out.stdout)
    assert info["num_parts"] == 2 and info["num_units"] == 4 and info["bytes"] == 1000
    assert (tmp_path / "run" / "manifests" / "part-00001.parquet").is_file()
