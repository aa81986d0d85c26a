"""Safe extraction of tar / tar.gz / zip shards.

We never let an archive choose where a file lands: each accepted member is streamed to a
name we build from its id, inside the destination. Members that are links, devices,
absolute paths or climb out with '..' are refused with a reason, and the totals are capped so
a zip bomb cannot fill the shared filesystem.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO


@dataclass
class Member:
    name: str
    size: int
    refused: str | None  # why the member is not extracted; None if it is a plain file
    open: Callable[[], IO[bytes]] | None


def unsafe_name_reason(name: str) -> str | None:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path in archive"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path escapes the archive ('..')"
    return None


def _tar_members(path: Path) -> Iterator[Member]:
    with tarfile.open(path, "r:*") as tar:
        for info in tar:
            if info.isdir():
                continue
            reason = unsafe_name_reason(info.name)
            if reason is None and (info.issym() or info.islnk()):
                reason = f"link in archive (-> {info.linkname})"
            elif reason is None and not info.isfile():
                reason = "device, fifo or other special file in archive"
            yield Member(info.name, info.size, reason,
                         None if reason else (lambda info=info: tar.extractfile(info)))


def _zip_members(path: Path) -> Iterator[Member]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            reason = unsafe_name_reason(info.filename)
            if reason is None and stat.S_ISLNK(mode):
                reason = "link in archive"
            elif reason is None and stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type recorded
                reason = "device, fifo or other special file in archive"
            yield Member(info.filename, info.file_size, reason,
                         None if reason else (lambda info=info: zf.open(info)))


def iter_members(path: Path) -> Iterator[Member]:
    if zipfile.is_zipfile(path):
        return _zip_members(path)
    return _tar_members(path)


class CappedWriter:
    """Copies a member stream to disk while enforcing the archive's total byte budget."""

    def __init__(self, max_bytes: int):
        self.remaining = max_bytes

    def copy(self, src: IO[bytes], dest: Path) -> int:
        written = 0
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > self.remaining:
                        raise OverflowError("archive exceeds fetch.max_archive_bytes")
                    out.write(chunk)
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.remaining -= written
        return written

