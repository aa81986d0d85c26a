"""Materialise the kept clips (or whole videos) under an output directory in the published
layout (curate/layout.py): `data/<input path>[/<clip id>].mp4`, `metadata.parquet` (one row per
kept clip, `file_name` relative to the root, the table `videofolder` joins), `curation/clips.parquet`
(every row, with status and reason) and the dataset card `README.md`.

copy modes: `auto` (the default: `link` for whole videos written as they are, `encode` for clips cut
out of longer videos or when resize, fps or dropping audio changes the file), `link` (hard link; a
symlink where the output is on another filesystem, said once), `copy`, `none` (tables only) and
`encode` (the `clips` settings: codec, crf, resize 720p/512/256 with crop or pad, fps cap, audio).
link and copy keep files whole, so they take rows that are whole videos (`split.kind: none`).
Every file is written under a temporary name and renamed, so an interrupted export leaves no
half-written file and a rerun skips what is already there with the same settings.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .config import ClipsConfig
from .errors import CurateError
from .hashing import stable_hash
from .rundir import atomic_write_parquet, atomic_write_text

COPY_MODES = ("auto", "link", "copy", "none", "encode")
STATE_FILE = ".curate-export.json"  # what each file was written with, for reruns


@dataclass
class PublishReport:
    written: int = 0
    skipped: int = 0
    failed: int = 0
    symlinked: int = 0
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # clip_id -> why its file could not be written


def whole_video(row: dict) -> bool:
    """The row's clip is its whole video (split.kind none, no windows)."""
    return (row.get("start_frame") or 0) == 0 and row.get("end_frame") is not None and \
        row.get("num_frames") is not None and row["end_frame"] >= row["num_frames"]


def output_relpath(row: dict, mode: str, cfg: ClipsConfig) -> str:
    # Built from the relpath's parts (an archive member's is shard::member), none of which can climb out:
    # a name may hold '::', '/' or '..' of its own.
    parts = [part for piece in str(row["relpath"]).split("::") for part in piece.split("/") if part not in ("", ".")]
    rel = PurePosixPath(*[part if part != ".." else "__" for part in parts] or ["_"])
    if whole_video(row) and mode != "encode":
        return rel.as_posix()
    suffix = ".webm" if cfg.codec == "libvpx-vp9" else ".mp4"
    if whole_video(row):
        return rel.with_suffix(suffix).as_posix()
    return (rel.with_suffix("") / f"{row['clip_id']}{suffix}").as_posix()


def check_relpath(rel: str) -> str:
    """`rel` itself, refused (ValueError) unless it is a relative path with no '..' part."""
    path = PurePosixPath(rel)
    if not path.parts or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"output path {rel!r} is not a plain relative path")
    return rel


def confined(root: Path, rel: str) -> Path:
    """root/rel, refused (ValueError) unless it resolves inside root (a symlinked folder could lead out)."""
    dest = root / check_relpath(rel)
    if not dest.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"output path {rel!r} resolves outside {root}")
    return dest


def _link(src: Path, dest: Path, report: PublishReport) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        os.symlink(src.resolve(), tmp)
        report.symlinked += 1
    os.replace(tmp, dest)


def copy_atomic(src: Path, dest: Path) -> None:
    """Copy under a temporary name, then rename: `dest` is never a half-written file."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp-copy")  # per process: indices share root files
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def row_mode(row: dict, mode: str, cfg: ClipsConfig) -> str:
    """The copy mode of one row: `auto` links a whole video the clip settings would not change."""
    if mode != "auto":
        return mode
    unchanged = cfg.resize == "none" and cfg.fps is None and (cfg.audio == "keep" or not row.get("has_audio"))
    return "link" if whole_video(row) and unchanged else "encode"


def publish(table, out_dir: Path, mode: str, cfg: ClipsConfig, progress=None, write_metadata: bool = True,
            card=None):
    """Write the kept rows' files under out_dir/data; returns (table with file_name and the written clip's
    facts, report). With write_metadata, also the tree's tables and, when `card` is given (a callable of
    the published curation table), its README.md."""

    from .clipfile import clip_facts, cut_clip
    from .layout import CURATION, DATA, METADATA, dataset_rows, local_roots, published
    from .materialize import video_filter

    if mode not in COPY_MODES:
        raise CurateError(f"--copy-mode {mode!r}: choose one of {', '.join(COPY_MODES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = table.to_dicts()
    kept = [r for r in rows if r.get("keep")]
    if mode in ("link", "copy"):
        parts = [r for r in kept if not whole_video(r)]
        if parts:
            raise CurateError(f"--copy-mode {mode} keeps whole files, but {len(parts)} kept clips are parts of "
                              "longer videos (e.g. " + parts[0]["clip_id"] + "): use --copy-mode auto or encode, "
                              "or split.kind: none (curate offline-filter) to filter whole videos")
    state_path = out_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    report = PublishReport()
    outputs: dict[str, str] = {}
    facts: dict[str, dict] = {}
    try:
        taken: dict[str, str] = {}  # output path -> the clip written there
        for done, row in enumerate(kept, 1):
            if mode == "none":
                break
            how = row_mode(row, mode, cfg)
            tag = stable_hash({"mode": how, **(cfg.model_dump() if how == "encode" else {})})[:12]
            rel = f"{DATA}/{output_relpath(row, how, cfg)}"
            if taken.setdefault(rel, row["clip_id"]) != row["clip_id"]:  # one name twice (a shard's duplicate members)
                path = PurePosixPath(rel)
                rel = path.with_name(f"{path.stem}.{row['clip_id']}{path.suffix}").as_posix()
                taken[rel] = row["clip_id"]
            src = Path(row["path"])
            try:
                dest = confined(out_dir, rel)
                if dest.exists() and state.get(rel) == tag:
                    report.skipped += 1
                else:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if how == "link":
                        _link(src, dest, report)
                    elif how == "copy":
                        copy_atomic(src, dest)
                    else:
                        cut_clip(str(src), dest, row["start_s"], row["clip_duration_s"], "reencode", cfg.crf,
                                 video_filter(cfg), cfg.codec, cfg.preset, audio=cfg.audio)
                    state[rel] = tag
                    report.written += 1
                facts[row["clip_id"]] = clip_facts(dest)
            except Exception as exc:  # one unwritable file is a row's failure, not the export's
                report.failed += 1
                report.notes.append(f"{rel}: {type(exc).__name__}: {exc}")
                report.errors[row["clip_id"]] = f"{type(exc).__name__}: {exc}"
                continue
            outputs[row["clip_id"]] = rel
            if report.written and report.written % 20 == 0:
                atomic_write_text(state_path, json.dumps(state))
            if progress:
                progress(done, len(kept))
    finally:
        atomic_write_text(state_path, json.dumps(state))
    if report.symlinked:
        report.notes.insert(0, f"{report.symlinked} files are symlinks: hard links are not possible from the input's "
                               "filesystem to the output's")
    table = with_written(table, outputs, facts)
    if write_metadata:
        tree = published(table, local_roots(table, [str(out_dir)]))
        for old in ("metadata.jsonl", "metadata.csv"):  # one metadata format per tree (an older export's)
            (out_dir / old).unlink(missing_ok=True)
        atomic_write_parquet(out_dir / METADATA, dataset_rows(tree))
        atomic_write_parquet(out_dir / CURATION / "clips.parquet", tree)
        if card is not None:
            atomic_write_text(out_dir / "README.md", card(tree))
    return table, report


def with_written(table, outputs: dict[str, str], facts: dict[str, dict]):
    """The table with `file_name` (the written file, relative to the published root) and, for rows with a
    file, what that file holds (its size, frame count and whether it has audio, in place of the source's)."""
    import polars as pl

    ids = table["clip_id"].to_list() if "clip_id" in table.columns else [None] * table.height
    cols = {"file_name": pl.Series([outputs.get(c) for c in ids], dtype=pl.Utf8)}
    for name, dtype in (("clip_width", pl.Int64), ("clip_height", pl.Int64), ("clip_fps", pl.Float64),
                        ("clip_num_frames", pl.Int64)):
        cols[name] = pl.Series([facts.get(c, {}).get(name) for c in ids], dtype=dtype)
    source_audio = table["has_audio"].to_list() if "has_audio" in table.columns else [None] * table.height
    cols["has_audio"] = pl.Series([facts[c]["has_audio"] if c in facts else a for c, a in zip(ids, source_audio)],
                                  dtype=pl.Boolean)
    return table.with_columns(**cols)
