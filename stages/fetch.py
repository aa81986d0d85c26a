"""fetch: turn the manifest units of one index into local video files, probed.

A local file is used in place. An archive shard is extracted safely into the run directory.
A unit of a Hugging Face dataset (input.hf_repo) is taken from the HF cache when it is there, else
downloaded into the run directory (curate.hub: retried, resumed, size-checked); a downloaded archive
is deleted once extracted unless `keep_downloads`. Every unit and every archive member ends as a row
with a status and a reason.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath

from pydantic import Field, field_validator

from curate.hashing import printable, stable_id
from curate.sections import Runtime, StageSection, parse_bytes

from .archive import CappedWriter, iter_members
from .base import Stage
from .probe import probe, require_ffmpeg
from .schema import VIDEO_SCHEMA, frame

# What reading one member can raise when the member itself is bad (encrypted, an unsupported compression,
# corrupt data): that member fails, the rest of the archive is still read. A full disk is not among them.
MEMBER_ERRORS = (RuntimeError, NotImplementedError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error,
                 lzma.LZMAError)


class FetchConfig(StageSection):
    max_archive_bytes: int = 50 * 1000**3
    max_archive_members: int = Field(default=100_000, ge=1)
    keep_downloads: bool = Runtime(False)  # keep downloaded Hub archives after extraction (nothing later reads them)

    _norm_size = field_validator("max_archive_bytes", mode="before")(lambda cls, v: parse_bytes(v))


class FetchStage(Stage):
    name = "fetch"
    warm_modules = ("av",)

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        return dict(VIDEO_SCHEMA)

    def preflight(self) -> None:
        require_ffmpeg()

    def run(self, rows):
        from .cpus import concurrently, task_cores

        extensions = tuple(self.ctx.plan.config.input.extensions)
        units = list(rows.iter_rows(named=True))

        def local_file(unit: dict) -> dict:
            return self._probed({"video_id": unit["video_id"], "source": unit["source"],
                                 "relpath": unit["relpath"], "path": self._local_path(unit)})

        def is_local(unit: dict) -> bool:
            return unit["kind"] != "archive" and not unit["kind"].startswith("hf_")

        # A local file is only probed and hashed, mostly inside FFmpeg and hashlib: one per core at once.
        probed = iter(concurrently(local_file, [u for u in units if is_local(u)], task_cores(), "probe"))
        out: list[dict] = []
        for unit in units:
            if is_local(unit):
                out.append(next(probed))
            elif unit["kind"].startswith("hf_"):
                out += self._hub(unit, extensions)
            else:
                out += self._archive({**unit, "path": self._local_path(unit)}, extensions)
        self.ctx.stats["videos_ok"] = sum(r["status"] == "ok" for r in out)
        self._write_hashes(out)
        return frame(out, VIDEO_SCHEMA)

    def _write_hashes(self, rows: list[dict]) -> None:
        """The sha256 of every fetched file, beside the part: dedup's exact copies (stages/dedup.py)."""
        import polars as pl

        from curate.hashing import file_sha256
        from curate.rundir import atomic_write_parquet

        from .cpus import concurrently, task_cores
        from .dedup_table import fetch_hashes_path

        def sha256_of(row: dict) -> dict | None:
            try:
                return {"video_id": row["video_id"], "sha256": file_sha256(row["path"])}
            except OSError:
                return None  # unreadable now: split reports it; dedup then has no exact hash for it

        readable = [row for row in rows if row["status"] == "ok" and row.get("path")]
        hashed = [h for h in concurrently(sha256_of, readable, task_cores(), "sha256") if h is not None]
        atomic_write_parquet(fetch_hashes_path(self.ctx.run, self.ctx.index),
                             pl.DataFrame(hashed, schema={"video_id": pl.Utf8, "sha256": pl.Utf8}))

    def _local_path(self, unit: dict) -> str:
        """The unit's file as a path later stages can store: a file whose name is not UTF-8 is linked
        into the media folder under its id (a parquet column holds only UTF-8)."""
        if not unit.get("raw"):
            return unit["source"]
        real = os.fsdecode(unit["raw"])
        if unit["kind"] == "archive":
            return real  # read here only; its members get names of their own
        suffix = PurePosixPath(real).suffix.lower()
        alias = self.ctx.run.media_dir(self.ctx.index) / f"{unit['video_id']}{suffix if suffix.isascii() else ''}"
        alias.parent.mkdir(parents=True, exist_ok=True)
        alias.unlink(missing_ok=True)
        try:
            os.link(real, alias)
        except OSError:  # another filesystem, or the file is gone: a symlink (probe then says why)
            os.symlink(os.path.abspath(real), alias)
        return str(alias)

    @staticmethod
    def _probed(row: dict) -> dict:
        path = Path(row["path"])
        try:
            row["bytes"] = path.stat().st_size
        except OSError:
            pass
        facts, reason = probe(path)
        row.update(facts)
        row["status"], row["reason"] = ("failed", reason) if reason else ("ok", None)
        return row

    def _hub(self, unit: dict, extensions: tuple[str, ...]) -> list[dict]:
        from curate.errors import CurateError
        from curate.hub import cached, download

        source = self.ctx.plan.config.input
        archive = unit["kind"] == "hf_archive"
        unit = {**unit, "source": f"hf://datasets/{source.hf_repo}@{source.revision}/{unit['source']}"}
        local = cached(source.hf_repo, source.revision, unit["relpath"])
        downloaded = local is None
        if downloaded:
            # A video is media the later stages read: it goes where extracted members go.
            dest = self.ctx.run.downloads_dir(self.ctx.index) if archive else self.ctx.run.media_dir(self.ctx.index)
            self.ctx.log(f"fetch[{self.ctx.index}] downloading {unit['relpath']} ({unit['bytes'] or 0:,} bytes)")
            try:
                local = download(source.hf_repo, source.revision, unit["relpath"], dest, unit["bytes"])
            except CurateError as exc:
                return [{"video_id": unit["video_id"], "source": unit["source"], "relpath": unit["relpath"],
                         "bytes": unit["bytes"], "status": "failed", "reason": str(exc)}]
        if not archive:
            return [self._probed({"video_id": unit["video_id"], "source": unit["source"],
                                  "relpath": unit["relpath"], "path": str(local)})]
        rows = self._archive({**unit, "path": str(local)}, extensions)
        if downloaded and not self.cfg.keep_downloads:
            local.unlink(missing_ok=True)
        return rows

    def _archive(self, unit: dict, extensions: tuple[str, ...]) -> list[dict]:
        dest = self.ctx.run.media_dir(self.ctx.index)
        dest.mkdir(parents=True, exist_ok=True)
        writer = CappedWriter(self.cfg.max_archive_bytes)
        rows: list[dict] = []
        seen: Counter[str] = Counter()
        try:
            for count, member in enumerate(iter_members(Path(unit.get("path") or unit["source"]))):
                name = printable(member.name)  # a latin-1 tar name holds undecodable bytes
                seen[member.name] += 1
                # A name met again is another member: its own id (the first keeps the id it always had).
                again = () if seen[member.name] == 1 else (str(seen[member.name]),)
                base = {"video_id": stable_id(unit["video_id"], member.name, *again),
                        "source": f"{unit['source']}::{name}",
                        "relpath": f"{unit['relpath']}::{name}", "bytes": member.size}
                if count >= self.cfg.max_archive_members:
                    rows.append({**base, "status": "rejected",
                                 "reason": f"archive has more than fetch.max_archive_members="
                                           f"{self.cfg.max_archive_members} members; the rest were not read"})
                    break
                suffix = PurePosixPath(name).suffix.lower()
                if member.refused:
                    rows.append({**base, "status": "rejected", "reason": member.refused})
                elif suffix not in extensions:
                    rows.append({**base, "status": "skipped", "reason": f"not a video (extension {suffix or 'none'})"})
                else:
                    target = dest / f"{base['video_id']}{suffix}"
                    try:
                        with member.open() as src:
                            writer.copy(src, target)
                    except OverflowError as exc:
                        rows.append({**base, "status": "rejected", "reason": str(exc)})
                        continue
                    except MEMBER_ERRORS as exc:
                        rows.append({**base, "status": "failed",
                                     "reason": f"member unreadable: {type(exc).__name__}: {exc}"})
                        continue
                    rows.append(self._probed({**base, "path": str(target)}))
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            rows.append({"video_id": unit["video_id"], "source": unit["source"], "relpath": unit["relpath"],
                         "bytes": unit["bytes"], "status": "failed",
                         "reason": f"archive unreadable after {len(rows)} members: {type(exc).__name__}: {exc}"})
        if not rows:
            rows.append({"video_id": unit["video_id"], "source": unit["source"], "relpath": unit["relpath"],
                         "bytes": unit["bytes"], "status": "skipped", "reason": "empty archive"})
        return rows
