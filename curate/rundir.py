"""The run directory is the database: every path a run uses, in one place."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CurateError
from .secrets import scrub

INDEX_WIDTH = 5


def part_name(index: int) -> str:
    return f"part-{index:0{INDEX_WIDTH}d}"


def write_temp(path: Path, data: bytes) -> Path:
    """Write `data` to a new, fsynced temp file beside `path` and return its name (removed on failure).

    Created with os.open(0o666) rather than mkstemp (always 0600) so its mode follows the umask:
    a group sharing a run directory can read everything curate writes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp name in the same directory, fsync, rename: readers never see half a file."""
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Every text record curate writes (markers, run.yaml, sbatch scripts) goes through the scrubber."""
    atomic_write_bytes(path, scrub(text).encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: Path, frame: Any) -> None:
    """Same guarantee as atomic_write_bytes for a polars DataFrame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.write_parquet(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        # A marker cut short by a crash on a filesystem without atomic rename semantics.
        return None


def last_error_line(path: Path) -> str | None:
    """The last meaningful line of a task's log (our own `===` banner lines skipped)."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln and not ln.startswith("===")]
    return lines[-1][:300] if lines else None


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> RunDir:
        return cls(Path(path).expanduser().resolve())

    # -- layout ---------------------------------------------------------------------------
    @property
    def run_yaml(self) -> Path:
        return self.root / "run.yaml"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def manifest_info(self) -> Path:
        return self.manifests / "_manifest.json"

    def manifest_part(self, index: int) -> Path:
        return self.manifests / f"{part_name(index)}.parquet"

    def stage_part(self, stage: str, index: int) -> Path:
        return self.root / "stages" / stage / f"{part_name(index)}.parquet"

    def marker_dir(self, stage: str) -> Path:
        return self.root / "markers" / stage

    def marker(self, stage: str, index: int, kind: str) -> Path:
        return self.marker_dir(stage) / f"{index:0{INDEX_WIDTH}d}.{kind}"

    def log_dir(self, stage: str) -> Path:
        return self.root / "logs" / stage

    def media_dir(self, index: int) -> Path:
        """Where fetch extracts archive members for one index."""
        return self.root / "media" / part_name(index)

    def downloads_dir(self, index: int) -> Path:
        """Where fetch downloads one index's shards from the Hub (unless the HF cache has them)."""
        return self.root / "downloads" / part_name(index)

    def clips_dir(self, index: int) -> Path:
        return self.root / "clips" / part_name(index)

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    # -- state ----------------------------------------------------------------------------
    def require(self) -> RunDir:
        if not self.run_yaml.is_file():
            raise CurateError(f"{self.root} is not a curate run directory (no run.yaml); "
                              "start one with `curate local` or `curate submit`")
        return self

    def num_parts(self) -> int:
        info = read_json(self.manifest_info)
        if info is None:
            raise CurateError(f"{self.root} has no manifest yet; run `curate manifest` first")
        return int(info["num_parts"])
