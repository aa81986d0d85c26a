#!/usr/bin/env python
"""What publishing costs on top of writing the clips, measured in this run.

    .venv/bin/python scripts/bench_publish.py [ROWS] [CLIPS]

1. The root files an upload index rebuilds from every index's curation table (metadata.parquet and
   the card with its histograms): seconds for ROWS rows (default 200000) in 100 parts.
2. WebDataset shards: CLIPS copies (default 200) of a sample clip packed into tars, MB/s against a
   plain file copy of the same bytes.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from curate import wds  # noqa: E402
from curate.config import validate_config  # noqa: E402
from curate.layout import root_files  # noqa: E402


def curation_table(rows: int):
    import random

    rng = random.Random(0)
    status = ["ok"] * 8 + ["filtered", "dropped"]
    return pl.DataFrame({
        "video_id": [f"v{i // 10}" for i in range(rows)], "clip_id": [f"v{i // 10}-{i:06d}" for i in range(rows)],
        "relpath": [f"dir/v{i // 10}.mp4" for i in range(rows)], "status": [rng.choice(status) for _ in range(rows)],
        "reason": [None] * rows, "keep": [True] * rows, "part": [i % 100 for i in range(rows)],
        "start_s": [0.0] * rows, "end_s": [4.0] * rows, "clip_duration_s": [4.0] * rows,
        "quality": [rng.random() for _ in range(rows)], "motion_score": [rng.random() / 100 for _ in range(rows)],
        "flash_ratio": [rng.random() / 50 for _ in range(rows)], "caption": ["a caption"] * rows,
        "file_name": [f"data/dir/v{i // 10}/v{i // 10}-{i:06d}.mp4" for i in range(rows)],
    })


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    clips = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    config = validate_config({"filter": {"ocr": {"enabled": False}, "nsfw": {"enabled": False}}})
    table = curation_table(rows)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = [tmp / f"part-{i:05d}.parquet" for i in range(100)]
        for i, path in enumerate(parts):
            table.filter(pl.col("part") == i).write_parquet(path)
        start = time.perf_counter()
        curation = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
        root_files(curation, config, "files", "f" * 16, "other", tmp)
        took = time.perf_counter() - start
        print(f"root files from {rows} rows in 100 parts: {took:.2f} s "
              f"(metadata.parquet {(tmp / 'metadata.parquet').stat().st_size / 1e6:.1f} MB)")
        sample = REPO / "samples" / "bikes.mp4"
        samples = [{"key": f"k{i:06d}", "video": sample, "ext": ".mp4", "meta": {"clip_id": f"c{i}"},
                    "caption": "x"} for i in range(clips)]
        start = time.perf_counter()
        groups = wds.plan_shards(samples, 50e6)
        for n, group in enumerate(groups):
            wds.write_shard(tmp / f"s-{n:06d}.tar", group)
        tar_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(clips):
            shutil.copyfile(sample, tmp / f"c{i}.mp4")
        copy_s = time.perf_counter() - start
        mb = clips * sample.stat().st_size / 1e6
        print(f"webdataset: {clips} clips ({mb:.0f} MB) in {len(groups)} shards: {mb / tar_s:.0f} MB/s; "
              f"plain copy {mb / copy_s:.0f} MB/s; ratio {tar_s / copy_s:.2f}x")


if __name__ == "__main__":
    main()
