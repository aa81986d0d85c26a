#!/usr/bin/env bash
# Quickstart: set up, then run the whole pipeline offline on CPU over the bundled sample videos.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
workdir="${1:-demo-run}"
.venv/bin/curate local --input-dir samples --workdir "$workdir" --parts 2
.venv/bin/curate status --workdir "$workdir"
.venv/bin/python - "$workdir" <<'PY'
import sys, polars as pl
pl.Config.set_tbl_rows(20); pl.Config.set_tbl_cols(12); pl.Config.set_tbl_width_chars(230); pl.Config.set_fmt_str_lengths(48)
table = pl.read_parquet(f"{sys.argv[1]}/metadata/clips.parquet")
print(table.select("relpath", "start_s", "end_s", "status", "quality", "flash_ratio", "motion_px",
                   "text_area_max", "nsfw_score", "reason"))
PY
echo "result: $(cd "$workdir" && pwd)/metadata/clips.parquet"
