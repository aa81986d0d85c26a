"""Decode once across stages: split's decode records what filter and score read (stages/handoff.py).

The filter and score stages must give the same decisions from split's records as from their own
decode of the same real clips, decode nothing when every record is there, and decode again (only
for what is missing) when a record no longer fits the settings."""

import json

import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, write_config

from stages.sampling import FrameNeed

FILES = [SAMPLES / "cuts_6shots.mp4", SAMPLES / "flash_3.mp4", SAMPLES / "bikes.mp4", DATA / "lightbox_text_160.mp4",
         DATA / "katna_cat_static.mp4", DATA / "still_4s.mp4", DATA / "subs_720p.mp4"]


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("handoff")
    inputs = tmp / "in"
    inputs.mkdir()
    for path in FILES:
        (inputs / path.name).write_bytes(path.read_bytes())
    cfg = write_config(tmp / "c.yaml", "split:\n  min_s: 1.0\n")
    curate("local", "-w", tmp / "run", "-i", inputs, "-c", cfg, "--no-progress")
    return tmp, inputs, cfg


def done(run, stage):
    return json.loads((run / "markers" / stage / "00000.done").read_text())


def live_columns(run):
    """The same clips through the filter analyzers' and the quality scorer's own decode."""
    from curate.config import validate_config
    from stages.analyzers import build_analyzers
    from stages.filter import filter_columns
    from stages.measure import ClipMeasurer
    from stages.scorers import build_scorers

    config = validate_config({"split": {"min_s": 1.0}})
    analyzers = build_analyzers(config.filter)
    (quality,) = build_scorers(config.score)
    for consumer in analyzers + [quality]:
        consumer.preflight()
    clips = pl.read_parquet(run / "stages" / "split" / "part-00000.parquet").filter(pl.col("status") == "ok").to_dicts()
    columns = filter_columns(analyzers, config.filter, ClipMeasurer(analyzers), clips)  # no records: all decoded
    for m in ClipMeasurer([quality]).clips(clips):
        columns[m.clip["clip_id"]].update(quality.measure([m.records[quality.key]])[0])
    return columns


def test_filter_and_score_decode_nothing_when_split_recorded_everything(recorded_run):
    tmp, _, _ = recorded_run
    run = tmp / "run"
    split, filtered, scored = done(run, "split"), done(run, "filter"), done(run, "score")
    assert split["records"] > 0 and (run / "stages" / "split" / "part-00000.handoff.parquet").is_file()
    assert filtered["clips_from_split"] == filtered["clips_scored"] == split["clips_ok"] > 10
    assert "decoded_for" not in filtered  # not one clip needed a decode
    assert scored["clips_scored"] > 0 and scored["decode_s"] == 0.0


def test_records_give_the_decisions_of_a_live_decode_on_real_footage(recorded_run):
    tmp, _, _ = recorded_run
    table = pl.read_parquet(tmp / "run" / "stages" / "score" / "part-00000.parquet").filter(
        pl.col("clip_id").is_not_null())
    live = live_columns(tmp / "run")
    quality_gaps = []
    for row in table.filter(pl.col("status") == "ok").iter_rows(named=True):
        own = live[row["clip_id"]]
        # flash records every frame: exactly what the live decode sees
        assert (row["flash_ratio"], row["flash_events"]) == (own["flash_ratio"], own["flash_events"])
        # the grid picks the samples nearest the live ones: the same decisions, close scores
        assert abs(row["motion_pairs"] - own["motion_pairs"]) <= 1
        assert (row["motion_area"] < 0.001) == (own["motion_area"] < 0.001), (row["clip_id"], row["motion_area"], own)
        assert (row["text_area_max"] > 0.02) == (own["text_area_max"] > 0.02), (
            row["clip_id"], row["text_area_max"], own)
        assert (row["nsfw_score"] > 0.8) == (own["nsfw_score"] > 0.8)
        if row["quality"] is not None:
            # Other frames of the same clips (4 per clip from the grid, 4 per clip live): on moving
            # footage (motion blur in bikes) a 4-frame median moves a little, on average not at all.
            quality_gaps.append(abs(row["quality"] - own["quality"]))
    assert len(quality_gaps) > 5 and sum(quality_gaps) / len(quality_gaps) < 0.04 and max(quality_gaps) < 0.12
    # The real text and the real flashes are still found from the records.
    by_file = {r["relpath"]: r for r in table.iter_rows(named=True)}
    assert by_file["lightbox_text_160.mp4"]["text_area_max"] > 0.02
    assert by_file["flash_3.mp4"]["flash_events"] == 3 and by_file["still_4s.mp4"]["motion_area"] == 0


def test_a_record_made_with_other_settings_is_decoded_again_for_that_analyzer_only(recorded_run):
    tmp, inputs, cfg = recorded_run
    before = pl.read_parquet(tmp / "run" / "stages" / "filter" / "part-00000.parquet")
    cfg.write_text("split:\n  min_s: 1.0\nfilter:\n  ocr:\n    size: 288\n")  # changes filter, not split
    curate("local", "-w", tmp / "run", "-i", inputs, "-c", cfg, "--no-progress")
    run = tmp / "run"
    filtered = done(run, "filter")
    assert filtered["clips_from_split"] == 0
    assert filtered["decoded_for"] == {"ocr": filtered["clips_scored"]}  # flash, motion and NSFW kept their records
    after = pl.read_parquet(run / "stages" / "filter" / "part-00000.parquet")
    joined = before.join(after, on="clip_id", suffix="_new").filter(pl.col("status") == "ok")
    assert (joined["flash_ratio"] == joined["flash_ratio_new"]).all()
    assert (joined["motion_area"] == joined["motion_area_new"]).all()
    assert joined["text_area_max_new"].null_count() == 0


def test_grid_samples_nearest_the_live_sample_times():
    from stages.handoff import pick_grid

    grid = [float(t) for t in range(20)]  # one sample a second from the video start
    # every 2 s from the clip's start (2.3): 2.3, 4.3, 6.3 -> the nearest grid samples inside the clip
    assert [grid[i] for i in pick_grid(grid, {"start_s": 2.3, "end_s": 7.3},
                                       FrameNeed(per_second=0.5))] == [3.0, 4.0, 6.0]
    # 4 spread over the clip: middles of 4 slices of [0, 8)
    assert [grid[i] for i in pick_grid(grid, {"start_s": 0.0, "end_s": 8.0},
                                       FrameNeed(count=4))] == [1.0, 3.0, 5.0, 7.0]
    # a clip between two grid samples has none: it is decoded instead
    assert pick_grid(grid, {"start_s": 3.2, "end_s": 3.9}, FrameNeed(per_second=0.5)) == []


def test_a_failing_recorder_costs_its_records_not_the_shots(monkeypatch):
    import stages.scorers.quality as quality
    from curate.config import validate_config
    from stages import handoff
    from stages.split import detect_shots

    def broken(gray):
        raise RuntimeError("a bug in a recorder")

    monkeypatch.setattr(quality, "frame_measures", broken)
    config = validate_config({})
    found = handoff.recorders(config, ["filter", "score"])
    shots = detect_shots(str(SAMPLES / "cuts_6shots.mp4"), config.split, 640, 360, 25.0, [r for _, r, _ in found])
    assert [a for a, _ in shots.ranges] == [0, 60, 120, 170, 230, 275]
    clip = {"start_s": 2.4, "end_s": 4.8}
    records = {consumer.key: recorder.for_clip(clip) for consumer, recorder, _ in found}
    assert records["score.quality"] is None  # the score stage decodes this clip itself
    assert all(records[k] is not None for k in ("filter.flash", "filter.motion", "filter.ocr", "filter.nsfw"))


def test_spread_samples_scale_with_the_clip_length():
    """OCR and NSFW sample round(duration x rate) frames (at least one) at slice middles, capped."""
    from stages.handoff import pick_grid
    from stages.sampling import sample_times

    need = FrameNeed(per_second=0.5, spread=True, max_samples=30)
    clips = {d: {"start_s": 10.0, "end_s": 10.0 + d} for d in (1.0, 2.1, 2.9, 3.0, 5.0, 600.0)}
    counts = {d: len(sample_times(clip, need.for_clip(clip))) for d, clip in clips.items()}
    assert counts == {1.0: 1, 2.1: 1, 2.9: 1, 3.0: 2, 5.0: 3, 600.0: 30}
    # a 1 s clip's one sample is its middle frame, not its first
    assert sample_times({"start_s": 10.0, "end_s": 11.0}, need.for_clip({"start_s": 10.0, "end_s": 11.0})) == [10.5]
    grid = [i * 0.25 for i in range(80)]
    assert [grid[i] for i in pick_grid(grid, {"start_s": 4.0, "end_s": 7.0}, need)] == [4.75, 6.25]
    # without an end (a live whole video of unknown length) it samples by rate from the start
    assert need.for_clip({"start_s": 0.0, "end_s": None}) is need
