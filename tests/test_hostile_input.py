"""Hostile and odd input names: nothing is written outside the output, every input keeps a row."""

import io
import os
import tarfile
import zipfile

import polars as pl
import pytest
from conftest import curate, ffmpeg, write_config

from curate.config import InputConfig
from curate.rundir import RunDir

FAST = "filter:\n  ocr: {enabled: false}\n  nsfw: {enabled: false}\n"
CLIMB = "..::..::..::escaped::PWNED.mp4"  # from <tmp>/a/b/out, each '::' read as '/' lands in <tmp>/escaped


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("video") / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(path))
    return path.read_bytes()


def _tar(path, members: list[tuple[str | bytes, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name.decode("latin-1") if isinstance(name, bytes) else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _rows(table: pl.DataFrame, relpath: str) -> list[dict]:
    return table.filter(pl.col("relpath") == relpath).to_dicts()


def _outside(tmp_path, allowed: set[str]) -> list[str]:
    return sorted(p for p in os.listdir(tmp_path) if p not in allowed)


def test_hostile_names_stay_inside_the_export(tmp_path, video):
    inp, out = tmp_path / "in", tmp_path / "a" / "b" / "out"
    inp.mkdir()
    (inp / "good.mp4").write_bytes(video)
    (inp / CLIMB).write_bytes(video)
    _tar(inp / "shard.tar", [("..::..::..::..::escaped::MEMBER.mp4", video)])  # one '..' more: shard.tar/ first
    cfg = write_config(tmp_path / "c.yaml", FAST)
    curate("offline-filter", "-i", inp, "-o", out, "-c", cfg, "--no-progress")
    assert _outside(tmp_path, {"in", "a", "c.yaml"}) == []
    assert os.listdir(tmp_path / "a" / "b") == ["out"]
    meta = pl.read_parquet(out / "curation" / "clips.parquet")
    for rel in (CLIMB, "shard.tar::..::..::..::..::escaped::MEMBER.mp4"):
        (row,) = _rows(meta, rel)
        assert row["status"] == "ok" and row["file_name"]
        written = out / row["file_name"]
        assert written.is_file() and written.resolve().is_relative_to(out.resolve())


def test_hostile_names_stay_inside_the_upload_target(tmp_path, video):
    inp, target = tmp_path / "in", tmp_path / "a" / "b" / "ds"
    inp.mkdir()
    (inp / CLIMB).write_bytes(video)  # from ds/data: one '..' is eaten by data/
    cfg = write_config(tmp_path / "c.yaml", FAST + f"split:\n  kind: none\nupload:\n  enabled: true\n"
                                                   f"  target_dir: {target}\n")
    curate("local", "-i", inp, "-w", tmp_path / "run", "-c", cfg, "--no-progress")
    assert _outside(tmp_path, {"in", "a", "run", "c.yaml"}) == []
    assert not (tmp_path / "a" / "escaped").exists()
    (row,) = _rows(pl.read_parquet(tmp_path / "run" / "metadata" / "clips.parquet"), CLIMB)
    assert row["status"] == "ok" and (target / row["file_name"]).resolve().is_relative_to(target.resolve())


def test_output_paths_are_built_from_parts_that_cannot_climb():
    from curate.config import ClipsConfig
    from curate.publish import check_relpath, output_relpath

    row = {"relpath": "../x::..::/etc/./passwd.mp4", "clip_id": "c1", "start_frame": 0, "end_frame": 9,
           "num_frames": 9}
    rel = output_relpath(row, "link", ClipsConfig())
    assert rel == "__/x/__/etc/passwd.mp4" and check_relpath(rel) == rel
    for bad in ("clips/../../x.mp4", "/etc/passwd", ""):  # what a Hub commit or a target dir refuses
        with pytest.raises(ValueError):
            check_relpath(bad)


def _local(tmp_path, fill) -> pl.DataFrame:
    """`curate local` over a folder that `fill(folder)` makes; the final table."""
    inp = tmp_path / "in"
    inp.mkdir()
    fill(inp)
    work = tmp_path / "run"
    curate("local", "-i", inp, "-w", work, "-c", write_config(tmp_path / "c.yaml", FAST), "--no-progress")
    return pl.read_parquet(work / "metadata" / "clips.parquet")


def _zip_with_bad_members(path, video: bytes) -> None:
    """good.mp4, then secret.mp4 flagged encrypted and weird.mp4 with an unknown compression (99, as AES)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in ("good.mp4", "secret.mp4", "weird.mp4"):
            zf.writestr(name, video)
    data = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    central = data.rfind(b"PK\x05\x06")
    central = int.from_bytes(data[central + 16:central + 20], "little")  # start of the central directory
    for name, offset, value in (("secret.mp4", (6, 8), None), ("weird.mp4", (8, 10), 99)):
        local = infos[name].header_offset
        cd = data.find(b"PK\x01\x02", central)
        while data[cd + 46:cd + 46 + len(name)] != name.encode():
            cd = data.find(b"PK\x01\x02", cd + 4)
        for pos in (local + offset[0], cd + offset[1]):
            if value is None:
                data[pos] |= 0x1  # general purpose flag bit 0: encrypted
            else:
                data[pos:pos + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_undecodable_names_become_printable_rows(tmp_path, video):
    def fill(inp):
        with open(os.path.join(os.fsencode(inp), b"bad\xff\xfe.mp4"), "wb") as fh:
            fh.write(video)
        _tar(inp / "latin.tar", [(b"caf\xe9.mp4", video), ("plain.mp4", video)])

    table = _local(tmp_path, fill)
    (local,) = _rows(table, "bad\\xff\\xfe.mp4")
    assert local["status"] == "ok", local["reason"]
    (member,) = _rows(table, "latin.tar::caf\\xe9.mp4")
    assert member["status"] == "ok", member["reason"]
    assert _rows(table, "latin.tar::plain.mp4")[0]["status"] == "ok"


def test_one_bad_zip_member_fails_alone(tmp_path, video):
    table = _local(tmp_path, lambda inp: _zip_with_bad_members(inp / "bad.zip", video))
    (secret,) = _rows(table, "bad.zip::secret.mp4")
    assert secret["status"] == "failed" and "encrypted" in secret["reason"]
    (weird,) = _rows(table, "bad.zip::weird.mp4")
    assert weird["status"] == "failed" and "NotImplementedError" in weird["reason"]
    assert _rows(table, "bad.zip::good.mp4")[0]["status"] == "ok"


def test_duplicate_members_keep_their_own_ids_and_files(tmp_path, video):
    table = _local(tmp_path, lambda inp: _tar(inp / "dup.tar", [("dup.mp4", video), ("dup.mp4", b"not a video")]))
    dups = _rows(table, "dup.tar::dup.mp4")
    assert len(dups) == 2 and len({r["video_id"] for r in dups}) == 2 and len({r["path"] for r in dups}) == 2
    assert sorted(r["status"] for r in dups) == ["failed", "ok"]
    assert all(os.path.isfile(r["path"]) for r in dups)


def test_symlinks_in_the_input_are_rows(tmp_path, video):
    def fill(inp):
        (inp / "real.mp4").write_bytes(video)
        (inp / "link.mp4").symlink_to(inp / "real.mp4")
        (inp / "dangling.mp4").symlink_to(inp / "gone.mp4")

    table = _local(tmp_path, fill)
    (link,) = _rows(table, "link.mp4")
    assert link["status"] == "ok"
    (dangling,) = _rows(table, "dangling.mp4")
    assert dangling["status"] == "failed" and "No such file" in dangling["reason"]


def test_an_interrupted_rebuild_keeps_the_old_manifest(tmp_path, monkeypatch, video):
    import curate.manifest as manifest

    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (inp / name).write_bytes(video)
    run = RunDir.at(tmp_path / "run")
    cfg = InputConfig(dir=str(inp), parts=2)
    old = manifest.write_manifest(run, cfg)

    def relpaths():
        return sorted(r for i in range(old["num_parts"]) for r in pl.read_parquet(run.manifest_part(i))["relpath"])

    before = relpaths()
    (inp / "a.mp4").unlink()
    for name in ("c.mp4", "d.mp4"):
        (inp / name).write_bytes(video)
    real_write, calls = manifest.atomic_write_parquet, []

    def dies_midway(path, frame):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after writing the first new part
        real_write(path, frame)

    monkeypatch.setattr(manifest, "atomic_write_parquet", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        manifest.write_manifest(run, cfg, rebuild=True)
    monkeypatch.undo()
    # The old input again: its manifest is still whole, and the shortcut gives exactly its units.
    for name in ("c.mp4", "d.mp4"):
        (inp / name).unlink()
    (inp / "a.mp4").write_bytes(video)
    assert manifest.write_manifest(run, cfg) == old and relpaths() == before == ["a.mp4", "b.mp4"]
    # And a rebuild that finishes replaces it whole.
    (inp / "e.mp4").write_bytes(video)
    new = manifest.write_manifest(run, cfg, rebuild=True)
    assert new["num_units"] == 3 and sorted(os.listdir(run.manifests)) == [
        "_manifest.json", "part-00000.parquet", "part-00001.parquet"]
