"""The dataset card: README.md with the Hub's YAML header, written from the run's curation table.

Header: licence (`upload.license`), size category, task categories, tags and `configs` (the
dataset's files; the full curation table sits in curation/, outside them).
Body: clips and hours kept, where they came from, every threshold with how many clips it
removed, the other reasons rows were left out, score distributions (histograms over the clips
that reached the thresholds), buckets, models with their weights, the curate version and the
config fingerprint.
"""

from __future__ import annotations

import yaml

from . import __version__
from .layout import CURATION, DATA, METADATA, dataset_rows

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
# numeric columns that are facts of the video or clip, not scores
NOT_SCORES = {"bytes", "width", "height", "fps", "duration_s", "num_frames", "rotation", "decoded_frames",
              "flash_cuts_ignored", "start_frame", "end_frame", "start_s", "end_s", "clip_duration_s", "part",
              "clip_width", "clip_height", "clip_fps", "clip_num_frames"}
BARS = " ▁▂▃▄▅▆▇█"


def size_category(n: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "n>1T")


TEXT_COLUMN = "caption"  # the dataset's text column (a column name, whichever stage fills it)


def header(rows: int, fmt: str, license_id: str, captioned: bool) -> dict:
    data = ([f"{DATA}/**/*.tar"] if fmt == "webdataset" else [METADATA, f"{DATA}/**"])
    return {
        "license": license_id,
        "size_categories": [size_category(rows)],
        "task_categories": ["text-to-video"] if captioned else ["video-classification"],
        "tags": ["video", "curate"] + (["webdataset"] if fmt == "webdataset" else []),
        # one config: datasets gives every config of a repo the builder of the default one, so the
        # curation table (parquet) stays a folder beside the data, outside data_files
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data}]}],
    }


def histogram(values, bins: int = 10) -> str:
    """One line: min, a bar per bin, max, with the quartiles."""
    if values.len() == 0:
        return "no values"
    lo, hi = float(values.min()), float(values.max())
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values.to_list():
        counts[min(int((v - lo) / width), bins - 1)] += 1
    top = max(counts) or 1
    bars = "".join(BARS[round(c / top * (len(BARS) - 1))] for c in counts)
    q = [float(values.quantile(p)) for p in (0.25, 0.5, 0.75)]
    return f"`{lo:.4g} {bars} {hi:.4g}` (p25 {q[0]:.4g}, median {q[1]:.4g}, p75 {q[2]:.4g}; {values.len()} clips)"


def threshold_lines(curation, config) -> list[str]:
    import polars as pl

    from .decisions import run_checks

    if "clip_id" not in curation.columns:
        return []
    reached = curation.filter(pl.col("clip_id").is_not_null() & pl.col("status").is_in(["ok", "filtered"]))
    lines = []
    for check in run_checks(config):
        if check.key is None or not all(c in reached.columns for c in check.columns):
            continue
        removed = int(reached.select(check.fails.fill_null(False).sum()).item() or 0)
        sign = ">" if check.fails_when == "above" else "<" if check.fails_when == "below" else "fails"
        limit = f" {check.limit:g}" if check.limit is not None else ""
        lines.append(f"| `{check.key}` | {check.name}: `{check.columns[0]}` {sign}{limit} | {removed} |")
    return lines


def card_text(curation, config, *, fmt: str = "files", fingerprint: str | None = None, license_id: str = "other",
              shards: list[dict] | None = None, pretty_name: str | None = None) -> str:
    """The README.md of a published tree from its curation table (every row, already published)."""
    import polars as pl

    from .export import reason_counts
    from .models_report import model_rows

    rows = dataset_rows(curation, fmt)
    hours = float(rows["clip_duration_s"].sum() or 0) / 3600 if "clip_duration_s" in rows.columns else 0.0
    captioned = TEXT_COLUMN in rows.columns and rows[TEXT_COLUMN].drop_nulls().len() > 0
    meta = header(rows.height, fmt, license_id, captioned)
    if pretty_name:
        meta["pretty_name"] = pretty_name
    videos = curation["video_id"].n_unique() if "video_id" in curation.columns else 0
    source = config.input.hf_repo and f"the Hugging Face dataset `{config.input.hf_repo}`" or \
        f"a directory of {videos} videos"
    out = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
           f"# {pretty_name or 'Curated video clips'}", "",
           f"**{rows.height} clips, {hours:.3f} hours** kept out of {videos} input videos from {source}, "
           f"curated with curate {__version__}" + (f" (config fingerprint `{fingerprint}`)." if fingerprint else "."),
           ""]
    if fmt == "webdataset":
        total = sum(s["nsamples"] for s in shards or [])
        out += [f"Format: WebDataset, {len(shards or [])} tar shards ({total} samples) under `{DATA}/`, listed in "
                "`shards.json` (the wids index: each shard with its sample count). Each sample is "
                "`<key>.mp4`, `<key>.json` (every column) and `<key>.txt` (the caption).", ""]
    else:
        out += [f"Format: video files under `{DATA}/` and `{METADATA}` (one row per clip, `file_name` relative "
                "to the root), the layout `videofolder` loads.", ""]
    out += [f"The full curation table (every input and clip, with `status` and `reason`) is `{CURATION}/*.parquet`: "
            f"`load_dataset(\"parquet\", data_files=\"<root>/{CURATION}/*.parquet\")`.", "",
            "## Load it", "", "```python", "from datasets import load_dataset",
            "", "ds = load_dataset(\"<this repo or directory>\", split=\"train\")  # video frames need torchcodec",
            "```", ""]
    lines = threshold_lines(curation, config)
    if lines:
        out += ["## Thresholds", "", "| key | check | clips removed |", "|---|---|---|", *lines, ""]
    reasons = reason_counts(curation)
    if reasons:
        out += ["## Rows left out", "", "| status: reason | rows |", "|---|---|",
                *[f"| {why or '(none)'} | {n} |" for why, n in reasons.items()], ""]
    reached = curation.filter(pl.col("clip_id").is_not_null() & pl.col("status").is_in(["ok", "filtered"])) \
        if "clip_id" in curation.columns else curation.head(0)
    scores = [c for c, t in reached.schema.items() if t in (pl.Float32, pl.Float64) and c not in NOT_SCORES]
    if scores:
        out += ["## Score distributions", "", "Over the clips that reached the thresholds (kept or filtered).", "",
                *[f"- `{c}`: {histogram(v)}" for c in scores if (v := reached[c].drop_nulls().drop_nans()).len()], ""]
    if "bucket" in rows.columns:
        counts = rows.group_by("bucket").len().sort("bucket").iter_rows()
        out += ["## Buckets", "", "resolution (short side) x aspect ratio x length in frames", "",
                "| bucket | clips |", "|---|---|", *[f"| {b} | {n} |" for b, n in counts], ""]
    if "has_audio" in rows.columns:
        out += [f"Audio: {int(rows['has_audio'].fill_null(False).sum())} of {rows.height} clips have an audio "
                f"track (`clips.audio: {config.clips.audio}`).", ""]
    clips = config.clips
    out += ["## How the clips were written", "",
            f"codec {clips.codec} (crf {clips.crf}), resize {clips.resize}"
            + (f" ({clips.fit})" if clips.resize not in ("none", "720p") else "")
            + (f", fps cap {clips.fps:g}" if clips.fps else "") + "; whole videos with no resize are kept as "
            "they are.", ""]
    models = [m for m in model_rows(config) if m["enabled"]]
    if models:
        out += ["## Models", "", "| model | weights |", "|---|---|",
                *[f"| {m['model']} | `{_weights(m['weights'])}` |" for m in models], ""]
    return "\n".join(out)


def _weights(text) -> str:
    """A model's weights as the card names them: a local file by its name only (no local path published)."""
    from pathlib import PurePosixPath

    text = str(text)
    return PurePosixPath(text).name if text.startswith(("/", "~")) else text
