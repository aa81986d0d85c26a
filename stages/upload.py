"""upload: publish one index's kept clips and its tables as part of a new dataset.

Per index, the clips that pass every threshold are written as export writes them (the `clips`
settings; whole videos the settings leave as they are are hard-linked) into a staging folder,
then go to `upload.target_repo` (a Hugging Face dataset, created if missing) in commits of about
`chunk_size_mb`, or to `upload.target_dir` (the same tree in a directory; the offline default is
WORKDIR/dataset). The tree is the published layout of curate/layout.py:

- `format: files`: `data/[<bucket>/]<input path>[/<clip id>].mp4` and, at the root, `metadata.parquet`
  (every kept clip of every index, `file_name` relative to the root), the table `videofolder` joins;
- `format: webdataset`: `data/[<bucket>/]<part>-NNNNNN.tar` of about `shard_size_mb` and, at the root,
  `shards.json` (the wids index: every shard with its sample count);
- always `curation/<part>.parquet` (every row of the index, with status and reason), sent after the
  index's clips, so its presence says the index is complete; and the card `README.md`.

The root files are rebuilt from every index's curation table each time an index finishes, until
the list of curation tables read is the list there after writing: the last index to finish
writes root files that name every index. A rerun uploads only what the target lacks (same size
and hash is skipped), so an interrupted upload resumes without duplicates. `cleanup_after_upload`
deletes the index's downloads, extracted media, clip files and split's records once every commit
is confirmed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.errors import CurateError
from curate.rundir import part_name
from curate.sections import Runtime, StageSection

from .base import Stage, earlier_decisions


class BucketsConfig(BaseModel):
    """Training buckets, as video trainers batch them: a clip goes to the largest resolution (short
    side, px) and length (frames) it reaches and the nearest aspect ratio (width:height)."""

    model_config = ConfigDict(extra="forbid")
    resolutions: list[int] = Field(default=[256, 512, 720], min_length=1)
    aspects: list[str] = Field(default=["9:16", "3:4", "1:1", "4:3", "16:9"], min_length=1)
    frames: list[int] = Field(default=[16, 32, 64, 128], min_length=1)

    @field_validator("aspects")
    @classmethod
    def _aspects(cls, v: list[str]) -> list[str]:
        for a in v:
            w, _, h = a.partition(":")
            if not (w.isdigit() and h.isdigit() and int(w) and int(h)):
                raise ValueError(f"aspect {a!r}: write width:height, e.g. 16:9")
        return v


class UploadConfig(StageSection):
    enabled: bool = False
    target_repo: str | None = None  # org/name of a HF dataset (created if missing)
    target_dir: str | None = None  # or a directory (default without target_repo: WORKDIR/dataset)
    private: bool = True
    chunk_size_mb: float = Runtime(500.0, gt=0)  # about this much per commit
    cleanup_after_upload: bool = Runtime(False)
    format: Literal["files", "webdataset"] = "files"  # video files + metadata.parquet, or tar shards
    shard_size_mb: float = Field(default=1000.0, gt=0)  # webdataset: about this much video per tar
    buckets: BucketsConfig | None = None  # resolution x aspect x frames: a folder (or shard set) per bucket
    license: str = "other"  # the card's licence id (Hub ids: cc-by-4.0, apache-2.0, ...)

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


# kept importable from here: the hashing and commit chunking of targets
from curate.targets import chunks, git_blob_sha, sha256_of  # noqa: E402,F401


class UploadStage(Stage):
    name = "upload"
    in_calibration = False
    publishes = True  # --skip-upload leaves it out

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        return {"file_name": "Utf8", "upload_error": "Utf8", "bucket": "Utf8", "shard": "Utf8", "key": "Utf8",
                "clip_width": "Int64", "clip_height": "Int64", "clip_fps": "Float64", "clip_num_frames": "Int64",
                "has_audio": "Boolean"}

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
        from curate.layout import CURATION, local_roots, published
        from curate.publish import publish
        from curate.rundir import atomic_write_parquet

        config = self.ctx.plan.config
        part = part_name(self.ctx.index)
        staging = self.ctx.run.root / "upload" / part
        decided = apply_decisions(rows, config)
        written, report = publish(decided, staging, "auto", config.clips, write_metadata=False)
        if report.failed:
            self.ctx.log(f"upload[{self.ctx.index}] {report.failed} clips could not be written: "
                         + "; ".join(report.notes[-3:]))
        # a kept clip whose file could not be written says why, instead of silently lacking a path
        errors = pl.Series("upload_error", [f"upload: clip file not written: {report.errors[c]}"
                                            if c in report.errors else None for c in written["clip_id"]],
                           dtype=pl.Utf8)
        written = written.with_columns(errors, bucket=pl.Series(self._buckets(written), dtype=pl.Utf8))
        if self.cfg.format == "webdataset":
            written, files = self._shards(written, staging, part)
        else:
            written, files = self._files(written, staging)
        cur_rel = f"{CURATION}/{part}.parquet"
        tree = published(written, local_roots(written, [str(self.ctx.run.root)]))
        atomic_write_parquet(staging / cur_rel, tree)
        files.append((cur_rel, staging / cur_rel))  # last: its presence says the index is complete
        target = self._target()
        sent, skipped = target.send(files, f"upload[{self.ctx.index}] {part}", self.ctx.log)
        self._refresh_root(target, staging)
        self.ctx.stats.update(files_sent=sent, files_skipped=skipped, clips_uploaded=int(tree["file_name"].is_not_null()
                              .sum() if self.cfg.format == "files" else tree["key"].is_not_null().sum()),
                              target=target.name)
        self.ctx.log(f"upload[{self.ctx.index}] {sent} files sent, {skipped} already there -> {target.name}")
        if self.cfg.cleanup_after_upload:
            self._cleanup(staging)
        return rows.with_columns([written[c] for c in self.columns(self.cfg)])

    def _buckets(self, written) -> list[str | None]:
        from curate.layout import bucket_of

        if self.cfg.buckets is None:
            return [None] * written.height
        return [bucket_of(w, h, n, self.cfg.buckets) if f else None for f, w, h, n in
                written.select("file_name", "clip_width", "clip_height", "clip_num_frames").iter_rows()]

    def _files(self, written, staging: Path):
        """files format: each clip at data/[<bucket>/]<path>, `file_name` saying where."""
        import polars as pl

        from curate.layout import DATA, data_path

        names, files = [], []
        for rel, bucket in written.select("file_name", "bucket").iter_rows():
            if rel is None:
                names.append(None)
                continue
            name = data_path(rel[len(DATA) + 1:], bucket)
            names.append(name)
            files.append((name, staging / rel))
        return written.with_columns(file_name=pl.Series(names, dtype=pl.Utf8),
                                    shard=pl.lit(None, pl.Utf8), key=pl.lit(None, pl.Utf8)), sorted(set(files))

    def _shards(self, written, staging: Path, part: str):
        """webdataset format: the clips of each bucket in tars of about shard_size_mb."""
        import polars as pl

        from curate import wds
        from curate.layout import DATA, local_roots, published

        meta = published(written, local_roots(written, [str(self.ctx.run.root)]))
        by_bucket: dict[str | None, list[dict]] = {}
        for row, out in zip(written.iter_rows(named=True), meta.drop("file_name").iter_rows(named=True)):
            if row["file_name"]:
                key = wds.sample_key(row["clip_id"])
                sample = {"key": key, "video": staging / row["file_name"], "ext": Path(row["file_name"]).suffix,
                          "meta": {**out, "key": key}, "caption": row.get("caption"), "clip_id": row["clip_id"]}
                by_bucket.setdefault(row["bucket"], []).append(sample)
        shard_of, files = {}, []
        (staging / "shards").mkdir(parents=True, exist_ok=True)
        for bucket, samples in sorted(by_bucket.items(), key=lambda kv: kv[0] or ""):
            folder = f"{DATA}/{bucket}" if bucket else DATA
            for n, group in enumerate(wds.plan_shards(samples, self.cfg.shard_size_mb * 1e6)):
                name = f"{folder}/{part}-{n:06d}{wds.SUFFIX}"
                for s in group:
                    s["meta"]["shard"] = name
                local = staging / "shards" / name.replace("/", "__")
                wds.write_shard(local, group)
                files.append((name, local))
                shard_of.update({s["clip_id"]: (name, s["key"]) for s in group})
        ids = written["clip_id"].to_list()
        return written.with_columns(
            file_name=pl.lit(None, pl.Utf8),
            shard=pl.Series([shard_of.get(c, (None, None))[0] for c in ids], dtype=pl.Utf8),
            key=pl.Series([shard_of.get(c, (None, None))[1] for c in ids], dtype=pl.Utf8)), files

    def _target(self):
        from curate.targets import DirTarget, RepoTarget

        if self.cfg.target_repo:
            return RepoTarget(self.cfg.target_repo, self.cfg.private, self.cfg.chunk_size_mb * 1e6)
        return DirTarget(self.cfg.target_root(self.ctx.run.root))

    def _refresh_root(self, target, staging: Path) -> None:
        """The root files from every index's curation table there, rewritten until that list stands still."""
        import polars as pl

        from curate.hashing import stable_hash
        from curate.layout import CURATION, root_files
        from curate.targets import scratch_dir

        plan, seen = self.ctx.plan, None
        for _ in range(20):
            names = target.names(CURATION)
            if names == seen:
                return
            scratch = scratch_dir(staging / "root")
            curation = pl.concat([pl.read_parquet(target.local(n, scratch)) for n in names], how="diagonal_relaxed")
            out = root_files(curation, plan.config, self.cfg.format, stable_hash(plan.fingerprints)[:16],
                             self.cfg.license, scratch)
            target.send(out, f"upload[{self.ctx.index}] root files", self.ctx.log)
            shutil.rmtree(scratch, ignore_errors=True)
            seen = names
        self.ctx.log(f"upload[{self.ctx.index}] other indices kept finishing; the last one rewrites the root files")

    def _cleanup(self, staging: Path) -> None:
        """Everything of this index the run made and no longer needs (never the user's input files)."""
        from . import handoff

        run, index = self.ctx.run, self.ctx.index
        for folder in (run.downloads_dir(index), run.media_dir(index), run.clips_dir(index), staging):
            shutil.rmtree(folder, ignore_errors=True)
        handoff.part_path(run, index).unlink(missing_ok=True)  # split's sampled frames, read by filter and score
        self.ctx.log(f"upload[{index}] cleaned up downloads, extracted media, clip files and split's records")
