"""Archive shards: safe extraction, every member accounted for, nothing written outside the run dir."""

import io
import os
import stat
import tarfile
import zipfile

import polars as pl
from conftest import SAMPLES, curate, write_config


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def _evil_tar(path, video: bytes) -> None:
    with tarfile.open(path, "w:gz") as tar:
        _add_bytes(tar, "videos/good.mp4", video)
        _add_bytes(tar, "../escape.mp4", video)
        _add_bytes(tar, "/tmp/curate-absolute.mp4", video)
        link = tarfile.TarInfo("videos/link.mp4")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        hard = tarfile.TarInfo("videos/hard.mp4")
        hard.type, hard.linkname = tarfile.LNKTYPE, "videos/good.mp4"
        tar.addfile(hard)
        dev = tarfile.TarInfo("videos/dev.mp4")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(dev)
        _add_bytes(tar, "videos/caption.txt", b"hello")


def _evil_zip(path, video: bytes) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("clip.mp4", video)
        zf.writestr("../../zip-escape.mp4", video)
        link = zipfile.ZipInfo("zlink.mp4")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("meta.json", "{}")


def test_archive_members_each_get_a_row(tmp_path, workdir):
    video = (SAMPLES / "carphone_pristine.mp4").read_bytes()
    shards = tmp_path / "shards"
    shards.mkdir()
    _evil_tar(shards / "a.tar.gz", video)
    _evil_zip(shards / "b.zip", video)
    (shards / "c.tar").write_bytes(b"not really a tar archive" * 100)
    cfg = write_config(tmp_path / "c.yaml",
                       f"input:\n  shards: [{shards / 'a.tar.gz'}, {shards / 'b.zip'}, {shards / 'c.tar'}]\n")
    before = set(os.listdir(tmp_path))
    curate("local", "-w", workdir, "-c", cfg, "--no-progress")
    table = pl.read_parquet(workdir / "metadata" / "clips.parquet")

    by_member = {}
    for row in table.iter_rows(named=True):
        by_member.setdefault(row["source"].split("::")[-1], set()).add((row["status"], row["reason"]))

    def only(member):
        (entry,) = by_member[member]
        return entry

    assert only("../escape.mp4") == ("rejected", "path escapes the archive ('..')")
    assert only("/tmp/curate-absolute.mp4") == ("rejected", "absolute path in archive")
    assert only("videos/link.mp4")[0] == "rejected" and "link" in only("videos/link.mp4")[1]
    assert only("videos/hard.mp4")[0] == "rejected" and "link" in only("videos/hard.mp4")[1]
    assert only("videos/dev.mp4")[0] == "rejected" and "special file" in only("videos/dev.mp4")[1]
    assert only("videos/caption.txt") == ("skipped", "not a video (extension .txt)")
    assert only("../../zip-escape.mp4")[0] == "rejected"
    assert only("zlink.mp4") == ("rejected", "link in archive")
    assert only("meta.json")[0] == "skipped"
    assert {s for s, _ in by_member["videos/good.mp4"]} == {"ok"}
    assert {s for s, _ in by_member["clip.mp4"]} == {"ok"}
    broken = table.filter(pl.col("source").str.ends_with("c.tar"))
    assert broken["status"].to_list() == ["failed"] and "archive unreadable" in broken["reason"][0]

    # nothing escaped the run directory
    assert set(os.listdir(tmp_path)) - {workdir.name} == before
    assert not os.path.exists("/tmp/curate-absolute.mp4")
    for name in ("escape.mp4", "zip-escape.mp4", "curate-absolute.mp4"):
        assert not list(tmp_path.parent.rglob(name)), f"{name} was written"
    extracted = list((workdir / "media").rglob("*.mp4"))
    assert len(extracted) == 2 and all(p.resolve().is_relative_to(workdir.resolve()) for p in extracted)


def test_archive_caps(tmp_path, workdir):
    video = (SAMPLES / "carphone_pristine.mp4").read_bytes()
    shard = tmp_path / "many.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(4):
            _add_bytes(tar, f"v{i}.mp4", video)
    cfg = write_config(tmp_path / "c.yaml", f"input:\n  shards: [{shard}]\n"
                       f"fetch:\n  max_archive_bytes: {int(len(video) * 2.5)}\n  max_archive_members: 3\n")
    curate("local", "-w", workdir, "-c", cfg, "--no-progress")
    table = pl.read_parquet(workdir / "metadata" / "clips.parquet")
    reasons = {r["source"].split("::")[-1]: (r["status"], r["reason"]) for r in table.iter_rows(named=True)
               if r["status"] != "ok"}
    assert reasons["v2.mp4"] == ("rejected", "archive exceeds fetch.max_archive_bytes")
    assert reasons["v3.mp4"][0] == "rejected" and "max_archive_members=3" in reasons["v3.mp4"][1]
    assert set(table.filter(pl.col("status") == "ok")["source"].str.split("::").list.last()) == {"v0.mp4", "v1.mp4"}
