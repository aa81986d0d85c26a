"""Sharded manifests: the input units of every array index.

A local directory becomes parts balanced by bytes (largest file first onto the lightest part),
so one index is not stuck with all the big files; archive shards are grouped in order.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import shutil
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from .config import InputConfig
from .errors import CurateError
from .hashing import printable, stable_id
from .rundir import RunDir, atomic_write_json, atomic_write_parquet, read_json

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


@dataclass(slots=True)  # slots: a million units must fit in a few hundred MB
class Unit:
    video_id: str
    kind: str  # file | archive (local) or hf_file | hf_archive (a path in input.hf_repo)
    source: str  # absolute path of the file or shard
    relpath: str
    bytes: int
    # The path's bytes when it is not valid UTF-8 (source and relpath then show them escaped): what fetch opens.
    raw: bytes | None = None


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def local_unit(root: Path, path: Path, kind: str) -> Unit:
    return _local_unit(str(path), len(str(root)) + 1, kind)


def _local_unit(path: str, prefix: int, kind: str) -> Unit:
    """The unit of `path` (a str under the scanned root, whose length + 1 is `prefix`): plain strings,
    no pathlib, as this runs once per input file."""
    rel = path[prefix:]
    source = path if path.isascii() else printable(path)  # most names are ASCII: skip the re-coding
    try:
        size = os.stat(path).st_size  # a symlink counts its target's bytes
    except OSError:
        size = 0  # a broken symlink: fetch gives it a row that says so
    # The id is of the real name, so two names that escape alike stay two videos.
    return Unit(stable_id(rel), kind, source, printable(rel) if source != path else rel, size,
                os.fsencode(path) if source != path else None)


def scan_dir(root: Path, extensions: list[str]) -> list[Unit]:
    if not root.is_dir():
        raise CurateError(f"input directory {root} does not exist or is not a directory")
    units = []
    wanted = tuple(extensions)
    top = str(root)
    prefix = len(top) + (0 if top.endswith("/") else 1)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            # Every file with a video extension is taken, broken or not, symlinks followed: fetch records
            # why a bad one gives no clips instead of it vanishing from the run.
            low = name.lower()
            kind = "file" if low.endswith(wanted) else "archive" if low.endswith(ARCHIVE_SUFFIXES) else None
            if kind:
                full = f"{dirpath}{name}" if dirpath.endswith("/") else f"{dirpath}/{name}"
                units.append(_local_unit(full, prefix, kind))
    return units


def read_shard_list(cfg: InputConfig) -> list[str]:
    """input.shards plus the lines of input.shards_file (`#` starts a comment, as `curate shards` writes)."""
    shards = list(cfg.shards)
    if cfg.shards_file:
        listing = Path(cfg.shards_file)
        if not listing.is_file():
            raise CurateError(f"input.shards_file {listing} does not exist")
        shards += [ln.split(" #")[0].strip() for ln in listing.read_text().splitlines()
                   if ln.strip() and not ln.lstrip().startswith("#")]
    return shards


def hub_units(cfg: InputConfig) -> list[Unit]:
    """The dataset's archives and videos (the pattern's or the listed ones), with their sizes."""
    from .hub import cached_files, list_files, offline

    listed = read_shard_list(cfg)
    if offline():
        files = cached_files(cfg.hf_repo, cfg.revision, listed)
    else:
        files = list_files(cfg.hf_repo, cfg.revision, pattern=cfg.pattern, paths=listed or None)
    units = []
    for f in files:
        kind = "hf_archive" if is_archive(f.path) else "hf_file" if f.path.lower().endswith(
            tuple(cfg.extensions)) else None
        if kind is None:
            if listed:
                raise CurateError(f"{f.path} in {cfg.hf_repo} is neither an archive (.tar, .tar.gz, .tgz, .zip) "
                                  f"nor a video ({', '.join(cfg.extensions)})")
            continue  # a pattern such as * also matches README.md
        units.append(Unit(stable_id(f"{cfg.hf_repo}@{cfg.revision}/{f.path}"), kind, f.path, f.path, f.size))
    return units


def shard_units(shards: list[str]) -> list[Unit]:
    units = []
    for shard in shards:
        if "://" in shard:
            raise CurateError(f"shard {shard}: remote shards are not supported yet; "
                              "download it and list the local path")
        path = Path(shard).expanduser().resolve()
        if not path.is_file():
            raise CurateError(f"shard {shard} does not exist (from input.shards / input.shards_file)")
        if not is_archive(path.name):
            raise CurateError(f"shard {shard} is not a .tar, .tar.gz, .tgz or .zip archive")
        units.append(Unit(stable_id(path.as_posix()), "archive", str(path), path.name, path.stat().st_size))
    return units


def balance_by_bytes(units: list[Unit], num_parts: int) -> list[list[Unit]]:
    """Largest first onto the lightest part; ties (equal bytes, e.g. many tiny files) go to the part with the
    fewest files. Each part lists its units by relpath. (Two stable sorts on attributes and heapreplace: at
    a million files a tuple key per unit and a pop + push per unit cost seconds.)"""
    by_path = sorted(units, key=attrgetter("relpath"))
    largest_first = sorted(by_path, key=attrgetter("bytes"), reverse=True)  # stable: ties stay by relpath
    heap = [(0, 0, i) for i in range(num_parts)]
    part_of: dict[int, int] = {}
    for unit in largest_first:
        load, count, i = heap[0]
        part_of[id(unit)] = i
        heapq.heapreplace(heap, (load + unit.bytes, count + 1, i))
    parts: list[list[Unit]] = [[] for _ in range(num_parts)]
    for unit in by_path:
        parts[part_of[id(unit)]].append(unit)
    return [p for p in parts if p]


def plan_parts(cfg: InputConfig) -> list[list[Unit]]:
    if cfg.hf_repo:
        units = hub_units(cfg)
        if not units:
            raise CurateError(f"dataset {cfg.hf_repo}@{cfg.revision} has no archives or videos"
                              + (f" matching {cfg.pattern!r}" if cfg.pattern else ""))
        return in_order(units, cfg)
    if cfg.dir:
        units = scan_dir(Path(cfg.dir).expanduser().resolve(), cfg.extensions)
        if not units:
            raise CurateError(f"no videos ({', '.join(cfg.extensions)}) or archives found under {cfg.dir}")
        total = sum(u.bytes for u in units)
        num = cfg.parts or max(1, math.ceil(total / max(cfg.part_size, 1)))
        return balance_by_bytes(units, min(num, len(units)))
    shards = read_shard_list(cfg)
    if not shards:
        raise CurateError("no input: set input.dir, input.hf_repo, input.shards or input.shards_file "
                          "(or pass --input-dir)")
    return in_order(shard_units(shards), cfg)


def in_order(units: list[Unit], cfg: InputConfig) -> list[list[Unit]]:
    """Shards grouped in their listed order: input.shards_per_part each, or into input.parts parts."""
    per = math.ceil(len(units) / cfg.parts) if cfg.parts else cfg.shards_per_part
    return [units[i:i + per] for i in range(0, len(units), per)]


def fingerprint(parts: list[list[Unit]]) -> str:
    """stable_hash of [[(video_id, source, bytes), ...], ...], fed to the hash a part at a time: the same
    value, without the whole manifest's JSON in memory at once."""
    digest = hashlib.sha256(b"[")
    for n, part in enumerate(parts):
        text = json.dumps([(u.video_id, u.source, u.bytes) for u in part], sort_keys=True, separators=(",", ":"),
                          default=str)
        digest.update((("," if n else "") + text).encode())
    digest.update(b"]")
    return digest.hexdigest()[:16]


# Above this many parts the manifest is one Parquet file (manifests/units.parquet, rows in part order,
# the units of each part in _manifest.json's part_units) instead of a file per part: 20,000 small files
# with an fsync each cost far more to write (and a metadata server more to hold) than one file to slice.
ONE_FILE_ABOVE_PARTS = 2000
UNITS_FILE = "units.parquet"
_SCHEMA = {"video_id": "Utf8", "kind": "Utf8", "source": "Utf8", "relpath": "Utf8", "bytes": "Int64", "raw": "Binary"}


def _frame(units: list[Unit]):
    import polars as pl

    columns = {name: [getattr(u, name) for u in units] for name in _SCHEMA}
    return pl.DataFrame(columns, schema={name: getattr(pl, kind) for name, kind in _SCHEMA.items()})


def read_manifest_part(run: RunDir, index: int, info: dict | None = None):
    """The input units of one index as a polars DataFrame, whichever layout the manifest has: what every
    reader of a part (fetch's input, export, calibration) goes through."""
    import polars as pl

    info = info if info is not None else read_json(run.manifest_info) or {}
    if info.get("layout") != "units":
        return pl.read_parquet(run.manifest_part(index))
    sizes = info["part_units"]
    if not 0 <= index < len(sizes):
        raise CurateError(f"index {index} is outside this run's manifest (0-{len(sizes) - 1})")
    start = sum(sizes[:index])
    # The slice is pushed into the scan: only the row groups that hold these rows are read.
    return pl.scan_parquet(run.manifests / UNITS_FILE).slice(start, sizes[index]).collect()


def manifest_part_units(run: RunDir, index: int, info: dict | None = None) -> int:
    """How many input units index `index` has (from _manifest.json when it says, else from the part)."""
    info = info if info is not None else read_json(run.manifest_info) or {}
    if "part_units" in info:
        return int(info["part_units"][index])
    return read_manifest_part(run, index, info).height


def write_manifest(run: RunDir, cfg: InputConfig, rebuild: bool = False) -> dict:
    """Build the manifest; keep an identical existing one; refuse to replace a different one."""
    parts = plan_parts(cfg)
    fp = fingerprint(parts)
    existing = read_json(run.manifest_info)
    if existing and existing["fingerprint"] == fp:
        return existing
    if existing and not rebuild:
        raise CurateError(
            f"{run.root} already holds a manifest of {existing['num_parts']} parts "
            f"({existing['num_units']} units) that differs from what the input gives now "
            f"({len(parts)} parts, {sum(map(len, parts))} units). Use a new --workdir, or pass "
            "--rebuild-manifest to replace it (every stage is then redone).")
    # Written whole into a fresh folder, then swapped in: an interrupted rebuild leaves the old manifest
    # (or, between the two renames, none, which the next run builds again), never a mix of the two.
    fresh, retired = run.manifests.with_name("manifests.new"), run.manifests.with_name("manifests.old")
    shutil.rmtree(fresh, ignore_errors=True)
    one_file = len(parts) > ONE_FILE_ABOVE_PARTS
    if one_file:
        atomic_write_parquet(fresh / UNITS_FILE, _frame([u for p in parts for u in p]))
    else:
        for index, units in enumerate(parts):
            atomic_write_parquet(fresh / run.manifest_part(index).name, _frame(units))
    info = {
        "fingerprint": fp,
        "num_parts": len(parts),
        "num_units": sum(map(len, parts)),
        "bytes": sum(u.bytes for p in parts for u in p),
        "source": cfg.dir or "shards",
        "part_bytes": [sum(u.bytes for u in p) for p in parts],
        "part_units": [len(p) for p in parts],
        "layout": "units" if one_file else "parts",
    }
    atomic_write_json(fresh / run.manifest_info.name, info)
    shutil.rmtree(retired, ignore_errors=True)
    if run.manifests.exists():
        run.manifests.rename(retired)
    fresh.rename(run.manifests)
    shutil.rmtree(retired, ignore_errors=True)
    return info
