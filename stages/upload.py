"""upload: publish one index's kept clips and its metadata as part of a new dataset.

Per index, the clips that pass every threshold are written as export writes them (the `clips`
settings: re-encoded, resized to 720p/512/256 with crop or pad, fps cap; whole videos with no
resize are hard-linked instead) into a staging folder, then go to `upload.target_repo` (a Hugging
Face dataset, created if missing) in commits of about `chunk_size_mb`, or to `upload.target_dir`
(the same layout in a directory; the offline default is WORKDIR/dataset). Layout:
`clips/<input path>[/<clip id>].mp4` and `metadata/part-NNNNN.parquet`, the metadata last, so an
index's metadata in the target means all of its clips are there.

A rerun uploads only what the target lacks: a file it already has with the same size and hash is
skipped, so an interrupted upload resumes without duplicates. `cleanup_after_upload` deletes the
index's downloads, extracted media, clip files and split's records once every commit is confirmed.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from pydantic import model_validator

from curate.errors import CurateError
from curate.rundir import part_name
from curate.sections import Runtime, StageSection

from .base import Stage, earlier_decisions


class UploadConfig(StageSection):
    enabled: bool = False
    target_repo: str | None = None  # org/name of a HF dataset (created if missing)
    target_dir: str | None = None  # or a directory (default without target_repo: WORKDIR/dataset)
    private: bool = True
    chunk_size_mb: float = Runtime(500.0, gt=0)  # about this much per commit
    cleanup_after_upload: bool = Runtime(False)

    @model_validator(mode="after")
    def _one_target(self) -> UploadConfig:
        if self.target_repo and self.target_dir:
            raise ValueError("give upload.target_repo or upload.target_dir, not both")
        if self.target_repo and self.target_repo.count("/") != 1:
            raise ValueError("upload.target_repo is a dataset id like org/name")
        return self

    def target_root(self, run_root: Path) -> Path:
        """The directory uploads go to when there is no target_repo."""
        return Path(self.target_dir) if self.target_dir else run_root / "dataset"

    def destination(self, run_root: Path) -> str:
        """Where this run's uploads go: the repo id, or the directory."""
        return self.target_repo or str(self.target_root(run_root))


def _digest(path: Path, digest) -> str:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return _digest(path, hashlib.sha256())


def git_blob_sha(path: Path) -> str:
    """The git object id of a file: what the Hub lists for files not stored through LFS."""
    return _digest(path, hashlib.sha1(b"blob %d\0" % path.stat().st_size))


def chunks(files: list[tuple[str, Path]], limit_bytes: float) -> list[list[tuple[str, Path]]]:
    """Files in commits of about limit_bytes each (a bigger file is a commit of its own)."""
    out: list[list[tuple[str, Path]]] = [[]]
    size = 0
    for rel, path in files:
        if out[-1] and size + path.stat().st_size > limit_bytes:
            out.append([])
            size = 0
        out[-1].append((rel, path))
        size += path.stat().st_size
    return [c for c in out if c]


class UploadStage(Stage):
    name = "upload"
    in_calibration = False
    publishes = True  # --skip-upload leaves it out

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        return {"upload_path": "Utf8", "upload_error": "Utf8"}

    @classmethod
    def outcome(cls, run, cfg) -> dict:
        return {"uploaded_to": cfg.destination(run.root)}

    @classmethod
    def fingerprint_inputs(cls, config) -> dict:
        # What is kept (every earlier threshold) and how clips are written decide what is uploaded.
        return {"decisions": earlier_decisions(config, "upload"), "clips": config.clips.model_dump()}

    def preflight(self) -> None:
        if shutil.which("ffmpeg") is None:
            raise CurateError("upload writes clips with ffmpeg: install it (apt-get install ffmpeg) or put it on PATH")
        if self.cfg.target_repo:
            from huggingface_hub import get_token

            if not get_token():
                raise CurateError(f"upload.target_repo {self.cfg.target_repo}: no Hugging Face token; set HF_TOKEN to "
                                  "a token with write access (or run `hf auth login`), or use upload.target_dir")

    def run(self, rows):
        import polars as pl

        from curate.decisions import apply_decisions
        from curate.publish import publish, whole_video
        from curate.rundir import atomic_write_parquet

        config = self.ctx.plan.config
        staging = self.ctx.run.root / "upload" / part_name(self.ctx.index)
        decided = apply_decisions(rows, config)
        kept = decided.filter(pl.col("keep")).to_dicts()
        plain = all(whole_video(r) for r in kept) and config.clips.resize == "none" and config.clips.fps is None
        written, report = publish(decided, staging / "clips", "link" if plain else "encode", config.clips,
                                  write_metadata=False)
        if report.failed:
            self.ctx.log(f"upload[{self.ctx.index}] {report.failed} clips could not be written: "
                         + "; ".join(report.notes[-3:]))
        paths = written["output_path"].to_list()
        uploaded = pl.Series("upload_path", [f"clips/{p}" if p else None for p in paths], dtype=pl.Utf8)
        # a kept clip whose file could not be written says why, instead of silently lacking a path
        errors = pl.Series("upload_error", [f"upload: clip file not written: {report.errors[c]}"
                                            if c in report.errors else None for c in written["clip_id"]],
                           dtype=pl.Utf8)
        out = rows.with_columns(uploaded, errors)
        meta_rel = f"metadata/{part_name(self.ctx.index)}.parquet"
        atomic_write_parquet(staging / meta_rel, written.drop("output_path").with_columns(uploaded, errors))
        files = [(f"clips/{p}", staging / "clips" / p) for p in sorted(set(p for p in paths if p))]
        files.append((meta_rel, staging / meta_rel))  # last: its presence says the index is complete
        if self.cfg.target_repo:
            sent, skipped = self._to_repo(files)
        else:
            sent, skipped = self._to_dir(files)
        target = self.cfg.destination(self.ctx.run.root)
        self.ctx.stats.update(files_sent=sent, files_skipped=skipped, clips_uploaded=len(files) - 1, target=target)
        self.ctx.log(f"upload[{self.ctx.index}] {sent} files sent, {skipped} already there -> {target}")
        if self.cfg.cleanup_after_upload:
            self._cleanup(staging)
        return out

    def _to_dir(self, files: list[tuple[str, Path]]) -> tuple[int, int]:
        from curate.publish import confined, copy_atomic

        root = self.cfg.target_root(self.ctx.run.root)
        sent = skipped = 0
        for rel, path in files:
            dest = confined(root, rel)  # publish built rel from safe parts; this holds if it ever did not
            if dest.is_file() and dest.stat().st_size == path.stat().st_size and sha256_of(dest) == sha256_of(path):
                skipped += 1
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(path, dest)
            sent += 1
        return sent, skipped

    def _to_repo(self, files: list[tuple[str, Path]]) -> tuple[int, int]:
        from huggingface_hub import CommitOperationAdd, HfApi

        from curate.hub import REPO_TYPE, explain, list_files, retried
        from curate.publish import check_relpath

        for rel, _ in files:  # a path in the repo must not climb out of clips/ (publish never gives one that does)
            check_relpath(rel)
        api, repo = HfApi(), self.cfg.target_repo
        try:
            retried(api.create_repo, repo, repo_type=REPO_TYPE, private=self.cfg.private, exist_ok=True)
        except Exception as exc:
            raise explain(exc, f"creating dataset {repo} for upload") from None
        remote = {f.path: f for f in list_files(repo)}  # says itself what failed
        todo = []
        for rel, path in files:
            there = remote.get(rel)
            if there and there.size == path.stat().st_size and (
                    there.sha256 == sha256_of(path) if there.sha256 else there.blob_id == git_blob_sha(path)):
                continue
            todo.append((rel, path))
        batches = chunks(todo, self.cfg.chunk_size_mb * 1e6)
        for n, batch in enumerate(batches, 1):
            operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in batch]
            message = f"curate: {part_name(self.ctx.index)} ({n}/{len(batches)}, {len(batch)} files)"
            try:
                retried(api.create_commit, repo, operations, commit_message=message, repo_type=REPO_TYPE)
            except Exception as exc:  # the commits before this one stay; a rerun sends only the rest
                raise explain(exc, f"commit {n}/{len(batches)} to {repo}") from None
            self.ctx.log(f"upload[{self.ctx.index}] commit {n}/{len(batches)}: {len(batch)} files")
        return len(todo), len(files) - len(todo)

    def _cleanup(self, staging: Path) -> None:
        """Everything of this index the run made and no longer needs (never the user's input files)."""
        from . import handoff

        run, index = self.ctx.run, self.ctx.index
        for folder in (run.downloads_dir(index), run.media_dir(index), run.clips_dir(index), staging):
            shutil.rmtree(folder, ignore_errors=True)
        handoff.part_path(run, index).unlink(missing_ok=True)  # split's sampled frames, read by filter and score
        self.ctx.log(f"upload[{index}] cleaned up downloads, extracted media, clip files and split's records")
