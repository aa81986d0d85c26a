"""dedup: exact and near-duplicate clips across every index of the run, and against earlier releases.

A run-wide step (`run_wide`): one task after every index has passed the stage before, over all of
them at once (curate/runwide.py). Per index it gathers each clip's signature: the sha256 of its file
(fetch) and the perceptual hashes of its frames (stages/signatures.py, recorded in split's decode),
into stages/dedup/part-N.signatures.parquet. Then:

  exact  clips of byte-identical files with the same time range;
  near   clips whose frames are within `max_bits` of each other (median over the shorter clip, at the
         time offset that places it inside the longer one): re-encodes, rescales, small crops,
         letterbox, frame-rate changes, rotation metadata, a segment cut out of a longer video.

Each group keeps one clip: one an earlier release already holds, else one an earlier dedup of this
run kept, else the highest `quality`, then the most pixels, then the longest, then the smallest
clip id. The others get status `duplicate`, `duplicate_of` (the kept clip; `release:clip_id` for an
earlier release), `dup_group` and `dup_kind` / `dup_distance` (Hamming bits, 0 for exact). Only the
clips that pass the earlier stages' thresholds take part (`only_kept`), so a duplicate is never
kept in favour of a clip export then drops. Indices that did not pass the stage before are left
out and said so; when they do later, the next dedup adds them without changing what it decided.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from curate.sections import Runtime, StageSection

from .base import Stage, earlier_decisions, target_clips
from .signatures import SignatureConfig, SignatureConsumer

COLUMNS = {"duplicate_of": "Utf8", "dup_group": "Utf8", "dup_kind": "Utf8", "dup_distance": "Float64"}
TIER_RELEASE, TIER_KEPT, TIER_NEW, TIER_DUPLICATE = 0, 1, 2, 3


class DedupConfig(StageSection):
    exact: bool = True  # byte-identical files (sha256 at fetch)
    near: bool = True  # perceptual frame hashes
    # CLIP embeddings (score.laion_aes must be on): clips at least min_cosine alike are duplicates too
    semantic: bool = False
    min_cosine: float = Field(default=0.95, gt=0, le=1)
    max_bits: int = Field(default=14, ge=0, le=32)  # Hamming distance (of 64 bits) of a near duplicate
    min_cover: float = Field(default=0.8, gt=0, le=1)  # share of the shorter clip the longer one must span
    bands: int = Field(default=8, ge=1, le=16)
    band_bits: int | None = Field(default=None, ge=8, le=32)  # null: from the number of frames
    only_kept: bool = True  # only clips passing the earlier stages' thresholds take part
    signature: SignatureConfig = Field(default_factory=SignatureConfig)
    against: list[str] = Field(default_factory=list)  # earlier releases' signature tables (paths, hf://)
    decode_threads: int = Runtime(0, ge=0)


def semantic_duplicates(embeddings: list, min_cosine: float, bands: int):
    """Clip pairs [n, 2] whose embeddings (float16 bytes, or None) are at least min_cosine alike, and the
    unit embeddings [clips, d] (zero rows for clips without one). Candidates from a 64-bit SimHash
    (random hyperplanes) through the same banding as frame hashes, then the exact cosine."""
    import numpy as np

    from .dedup_groups import Signatures, candidate_pairs

    width = next((len(e) // 2 for e in embeddings if e), 0)
    unit = np.zeros((len(embeddings), width), dtype=np.float32)
    for n, e in enumerate(embeddings):
        if e and len(e) // 2 == width:
            unit[n] = np.frombuffer(e, dtype=np.float16).astype(np.float32)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    has = np.flatnonzero(unit.any(axis=1))
    if width == 0 or len(has) < 2:
        return np.zeros((0, 2), dtype=np.int64), unit
    planes = np.random.default_rng(0).standard_normal((width, 64)).astype(np.float32)
    bits = (unit[has] @ planes > 0).astype(np.uint8)
    simhash = np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)
    # Two vectors an angle t apart differ in t/pi of the hyperplanes: twice that many bits, for slack.
    slack = int(np.ceil(2 * 64 * np.arccos(min_cosine) / np.pi)) + 2
    sig = Signatures(simhash, np.zeros(len(has), dtype=np.float32), np.arange(len(has) + 1, dtype=np.int64))
    pairs = has[candidate_pairs(sig, slack, bands)]
    alike = np.einsum("ij,ij->i", unit[pairs[:, 0]], unit[pairs[:, 1]]) >= min_cosine
    return pairs[alike], unit


def keep_greedily(groups: list[int], nodes: list[int], edges) -> dict[int, int]:
    """node -> the node it is kept as (itself, or the clip it duplicates), members best first.

    A member is a duplicate of the best kept clip it matches directly; one that matches none is kept
    too. Matching is not transitive: a long clip holding two shots links both shots' clips, yet neither
    shot's clip duplicates the other's."""
    neighbours: dict[int, set[int]] = {}
    for a, b in edges.tolist():
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    kept_of: dict[int, int] = {}
    kept: list[int] = []
    current = None
    for group, node in zip(groups, nodes):
        if group != current:
            current, kept = group, []
        near = neighbours.get(node, set())
        match = next((k for k in kept if k in near), None)
        if match is None:
            kept.append(node)
        kept_of[node] = node if match is None else match
    # a clip kept alone (no duplicate of it) is in no group
    used = {k for n, k in kept_of.items() if n != k}
    return {n: k for n, k in kept_of.items() if n != k or n in used}


class DedupStage(Stage):
    name = "dedup"
    warm_modules = ("numpy", "cv2")
    run_wide: ClassVar[bool] = True

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        return dict(COLUMNS)

    @classmethod
    def fingerprint_inputs(cls, config) -> dict:
        return earlier_decisions(config, cls.name) if config.dedup.only_kept else {}

    @classmethod
    def recorded_consumers(cls, cfg) -> list:
        return [SignatureConsumer(cfg.signature)] if cfg.enabled and cfg.near else []

    @classmethod
    def resources(cls, cfg):
        from curate.plugin import Resources

        return Resources(cpus=1, mem="8G")

    @classmethod
    def calibration_note(cls, clips, cfg) -> dict | None:
        import polars as pl

        if not cfg.enabled:
            return None
        row = (clips.filter(pl.col("status") == "duplicate")
               .select(clips=pl.len(), hours=pl.col("clip_duration_s").sum() / 3600).collect().row(0, named=True))
        count, hours = int(row["clips"]), round(float(row["hours"] or 0.0), 3)
        return {"clips": count, "hours": hours, "max_bits": cfg.max_bits,
                "line": f"dedup removed {count} duplicate clips ({hours:.2f} h) at max_bits={cfg.max_bits} "
                        "(not counted above)"}

    def preflight(self) -> None:
        from .dedup_table import read_release

        self.releases = {source: read_release(source) for source in self.cfg.against}

    # -- the run-wide step ---------------------------------------------------------------------
    def run_all(self, parts: dict, settled: dict, left_out: list[int]) -> dict:
        """Output parts of the indices in `parts` (upstream rows), given the dedup parts already
        written (`settled`, whose decisions stand)."""
        import polars as pl

        from curate.rundir import atomic_write_parquet

        from . import dedup_table

        run, stats = self.ctx.run, self.ctx.stats
        if left_out:
            self.ctx.log(f"dedup: {len(left_out)} indices left out of the groups (the stage before is not done "
                         f"for them): {left_out[:20]}{' ...' if len(left_out) > 20 else ''}")
        stats["left_out"] = left_out
        tables = []
        for index, rows in parts.items():
            table = self._signatures(index, rows)
            atomic_write_parquet(dedup_table.part_path(run, index), table)
            tables.append(table.with_columns(index=pl.lit(index), tier=pl.lit(TIER_NEW)))
        for index, out in settled.items():
            path = dedup_table.part_path(run, index)
            if path.is_file():
                status = out.select("clip_id", "status")
                table = pl.read_parquet(path).join(status, on="clip_id", how="left")
                tier = pl.when(pl.col("status") == "ok").then(TIER_KEPT).otherwise(TIER_DUPLICATE)
                tables.append(table.with_columns(index=pl.lit(index), tier=tier).drop("status"))
        for source, table in getattr(self, "releases", {}).items():
            name = dedup_table.release_name(source)
            tables.append(table.with_columns(clip_id=pl.lit(name + ":") + pl.col("clip_id"), index=pl.lit(-1),
                                             tier=pl.lit(TIER_RELEASE)))
        table = pl.concat(tables, how="vertical_relaxed") if tables else None
        found = self._groups(table) if table is not None and table.height else None
        outputs = {index: self._mark(rows, found) for index, rows in parts.items()}
        self._write_run_table(parts, outputs, settled)
        return outputs

    def _signatures(self, index: int, rows):
        """Every target clip's signature row, from split's records or a decode here."""
        import polars as pl

        from . import dedup_table
        from .handoff import Handoff
        from .handoff import part_path as handoff_path
        from .measure import ClipMeasurer

        run, config = self.ctx.run, self.ctx.plan.config
        clips = target_clips(rows, config, self.name, self.cfg.only_kept)
        sha: dict[str, str] = {}
        hashes_path = dedup_table.fetch_hashes_path(run, index)
        if self.cfg.exact and hashes_path.is_file():
            sha = dict(pl.read_parquet(hashes_path).select("video_id", "sha256").iter_rows())
        out = []
        records: dict[str, dict] = {}
        if self.cfg.near and clips:
            consumer = SignatureConsumer(self.cfg.signature)
            handoff = Handoff.read(handoff_path(run, index), config, [consumer])
            measurer = ClipMeasurer([consumer], handoff, self.name, self.ctx.log, self.ctx.stats,
                                    self.cfg.decode_threads, label=f"dedup[{index}]")
            for measured in measurer.clips(clips):
                if measured.records is not None:
                    records[measured.clip["clip_id"]] = measured.records[consumer.key].columns
        for clip in clips:
            record = records.get(clip["clip_id"]) or {"hashes": [], "times": []}
            start = float(clip.get("start_s") or 0.0)
            out.append({"clip_id": clip["clip_id"], "video_id": clip.get("video_id"),
                        "file_sha256": sha.get(clip.get("video_id")), "start_s": start, "end_s": clip.get("end_s"),
                        "duration_s": clip.get("clip_duration_s"),
                        "pixels": (clip.get("width") or 0) * (clip.get("height") or 0),
                        "quality": clip.get("quality"), "hashes": record["hashes"],
                        "embedding": clip.get("clip_embedding") if self.cfg.semantic else None,
                        "times": [round(t - start, 4) for t in record["times"]]})
        return dedup_table.frame(out)

    def _groups(self, table):
        """clip_id -> (kept clip, kind, distance) for every clip in a group of two or more."""
        import numpy as np
        import polars as pl

        from .dedup_groups import Signatures, components, near_duplicates, verify

        table = table.with_row_index("node")
        edges = [np.zeros((0, 2), dtype=np.int64)]
        if self.cfg.exact:
            same = (table.filter(pl.col("file_sha256").is_not_null())
                    .group_by("file_sha256", pl.col("start_s").round(2), pl.col("end_s").round(2))
                    .agg(pl.col("node")).filter(pl.col("node").list.len() > 1))
            for nodes in same["node"].to_list():
                edges.append(np.array([[nodes[0], n] for n in nodes[1:]], dtype=np.int64))
        sig = Signatures.from_lists(table["hashes"].to_list(), table["times"].to_list())
        if self.cfg.near:
            pairs, _ = near_duplicates(sig, self.cfg.max_bits, self.cfg.bands, self.cfg.band_bits, self.ctx.stats)
            edges.append(pairs)
        unit = None
        if self.cfg.semantic:
            pairs, unit = semantic_duplicates(table["embedding"].to_list(), self.cfg.min_cosine, self.cfg.bands)
            self.ctx.stats["semantic_pairs"] = len(pairs)
            edges.append(pairs)
        edges = np.concatenate(edges)
        label = components(table.height, edges)
        ranked = (table.with_columns(group=pl.Series(label))
                  .filter(pl.len().over("group") > 1)
                  .sort(["group", "tier", "quality", "pixels", "duration_s", "clip_id"],
                        descending=[False, False, True, True, True, False], nulls_last=True))
        kept_of = keep_greedily(ranked["group"].to_list(), ranked["node"].to_list(), edges)
        if not kept_of:
            self.ctx.stats.update(groups=0, duplicates=0)
            return {}
        ids = table["clip_id"].to_list()
        dups = [(node, kept) for node, kept in kept_of.items() if node != kept]
        pairs = np.array(dups, dtype=np.int64).reshape(-1, 2)
        _, distance = verify(sig, pairs, self.cfg.max_bits, self.cfg.min_cover)
        sha, start, end = table["file_sha256"].to_list(), table["start_s"].to_list(), table["end_s"].to_list()
        found = {ids[kept]: (ids[kept], None, None) for kept in set(kept_of.values())}
        for (node, kept), dist in zip(dups, distance.tolist()):
            exact = (sha[node] is not None and sha[node] == sha[kept] and abs(start[node] - start[kept]) < 0.01
                     and abs(end[node] - end[kept]) < 0.01)
            if exact:
                found[ids[node]] = (ids[kept], "exact", 0.0)
            elif dist <= self.cfg.max_bits or unit is None:
                found[ids[node]] = (ids[kept], "near", float(dist))
            else:  # linked by its embedding: the distance is 1 - cosine
                found[ids[node]] = (ids[kept], "semantic", round(1.0 - float(unit[node] @ unit[kept]), 4))
        self.ctx.stats.update(groups=len(set(kept_of.values())), duplicates=len(dups))
        return found

    def _mark(self, rows, found):
        import polars as pl

        if not found:
            return rows.with_columns(*[pl.lit(None, dtype=getattr(pl, t)).alias(c) for c, t in COLUMNS.items()])
        ids = [c for c in rows["clip_id"].to_list() if c in found]
        info = pl.DataFrame({"clip_id": ids, "dup_group": [found[c][0] for c in ids],
                             "dup_kind": [found[c][1] for c in ids], "dup_distance": [found[c][2] for c in ids]},
                            schema={"clip_id": pl.Utf8, "dup_group": pl.Utf8, "dup_kind": pl.Utf8,
                                    "dup_distance": pl.Float64})
        out = rows.join(info, on="clip_id", how="left")
        duplicate = pl.col("dup_kind").is_not_null()
        how = (pl.when(pl.col("dup_kind") == "exact").then(pl.lit("exact copy"))
               .when(pl.col("dup_kind") == "semantic")
               .then(pl.format("semantic, cosine {}", (1 - pl.col("dup_distance")).round(4)))
               .otherwise(pl.format("{}, {} bits", pl.col("dup_kind"), pl.col("dup_distance").round(1))))
        return out.with_columns(
            status=pl.when(duplicate).then(pl.lit("duplicate")).otherwise(pl.col("status")),
            reason=pl.when(duplicate).then(pl.format("duplicate of {} ({})", pl.col("dup_group"), how))
            .otherwise(pl.col("reason")),
            duplicate_of=pl.when(duplicate).then(pl.col("dup_group")).otherwise(pl.lit(None, dtype=pl.Utf8)),
        ).select([*rows.columns, *COLUMNS])

    def _write_run_table(self, parts: dict, outputs: dict, settled: dict) -> None:
        """metadata/signatures.parquet: every clip's signature and dedup status, for later releases."""
        import polars as pl

        from curate.rundir import atomic_write_parquet

        from . import dedup_table

        tables = []
        for index, out in {**settled, **outputs}.items():
            path = dedup_table.part_path(self.ctx.run, index)
            if path.is_file():
                tables.append(pl.read_parquet(path).join(out.select("clip_id", "status"), on="clip_id", how="left"))
        if tables:
            atomic_write_parquet(dedup_table.run_table_path(self.ctx.run), pl.concat(tables, how="vertical_relaxed"))
