"""Analyzers on real videos, decode-once correctness, and decisions derived at export."""

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, ffmpeg, local_with_import_blocked, write_config

from stages.analyzers.flash import flash_frames
from stages.decode import iter_frames, scan_clips
from stages.filter import FilterConfig
from stages.sampling import FrameNeed


def analyze(analyzer, path):
    """Feed one whole video to one analyzer as a single clip, through the decode loop the stages use."""
    analyzer.preflight()
    (scan,) = scan_clips(str(path), [{"start_s": 0.0, "end_s": None}], [analyzer])
    assert scan.frames > 0
    return analyzer.end()


def test_flash_flags_white_frames_not_the_untouched_video():
    from stages.analyzers.flash import FlashAnalyzer

    flashed = analyze(FlashAnalyzer(FilterConfig().flash), SAMPLES / "flash_3.mp4")
    clean = analyze(FlashAnalyzer(FilterConfig().flash), DATA / "noflash.mp4")
    assert flashed["flash_events"] == 3 and flashed["flash_ratio"] == pytest.approx(3 / 61, abs=0.01)
    assert clean == {"flash_ratio": 0.0, "flash_events": 0}


def test_flash_series_rules():
    luma = np.array([50, 50, 250, 52, 50, 200, 200, 200, 200, 200, 200], dtype=float)
    # one single-frame flash; the later jump does not come back: a cut, not a flash
    assert flash_frames(luma, 40, 4) == (1, 1)


def test_motion_still_vs_pan():
    from stages.analyzers.motion import MotionAnalyzer

    still = analyze(MotionAnalyzer(FilterConfig().motion), DATA / "still_4s.mp4")
    pan = analyze(MotionAnalyzer(FilterConfig().motion), DATA / "pan_4px.mp4")
    assert still["motion_px"] < 0.2 and still["motion_score"] < 0.0005 and still["motion_area"] == 0
    assert pan["motion_px"] == pytest.approx(4.0, abs=0.8)  # 4 px/frame at 640x360 = the reference size
    assert pan["motion_score"] > 20 * still["motion_score"] and pan["motion_area"] > 0.5
    assert still["motion_pairs"] == pan["motion_pairs"] == 8  # 2 pairs per second over 4 s


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_motion_flow_on_frames_too_small_for_the_pyramid(method):
    """OpenCV's DIS raised on an 8x8 or 200x6 frame, returned NaN on 18x600 and could crash the process
    on 24x800 after such a frame: each is enlarged for the flow, and a 1 px pan still reads about 1 px."""
    from stages.analyzers.motion import MotionAnalyzer

    motion = MotionAnalyzer(FilterConfig().motion.model_copy(update={"method": method}))
    texture = np.random.default_rng(0).integers(0, 256, (800, 800), dtype=np.uint8)
    for height, width in [(8, 8), (12, 12), (6, 200), (200, 6), (4, 200), (18, 600), (24, 800), (31, 200)]:
        frame = np.ascontiguousarray(texture[:height, :width])
        shifted = np.ascontiguousarray(np.roll(frame, 1, axis=1))
        assert motion.flow_magnitude(frame, shifted) == pytest.approx(1.0, abs=0.5), (height, width)
        assert motion.flow_magnitude(frame, frame.copy()) < 0.05, (height, width)


def test_motion_separates_frozen_and_still_frames_from_a_fixed_camera_on_people(tmp_path):
    """Static means nothing moves: a held photo and a real frozen stretch are static; a real fixed
    camera on a cat, a real fixed camera on two people in a room, and a person talking in a small
    part of an otherwise still frame, are not."""
    from curate.decisions import first_failure
    from stages.analyzers.motion import MotionAnalyzer

    # carphone (a man talking) composited into a corner of the held photo: about 5% of the frame moves
    talking = tmp_path / "talking_fixed.mp4"
    ffmpeg("-i", str(DATA / "still_4s.mp4"), "-i", str(SAMPLES / "carphone_pristine.mp4"), "-filter_complex",
           "[0:v][1:v]overlay=600:300:shortest=1,format=yuv420p", "-c:v", "libx264", "-crf", "20", str(talking))
    motion = MotionAnalyzer(FilterConfig().motion)

    def measure(path, start=0.0, end=None):
        motion.preflight()
        (scan,) = scan_clips(str(path), [{"start_s": start, "end_s": end}], [motion])
        result = motion.end()
        return result, first_failure(motion.threshold_checks(), result)

    still, still_fails = measure(DATA / "still_4s.mp4")
    frozen, frozen_fails = measure(DATA / "mma_armwrestle_corrupt.mp4", 231 / 28, 266 / 28)  # frozen 230-267
    cat, cat_fails = measure(DATA / "katna_cat_static.mp4")
    talk, talk_fails = measure(talking)
    people, people_fails = measure(DATA / "mma_skeleton_fixed_camera.mp4")
    assert still["motion_area"] == frozen["motion_area"] == 0
    assert still_fails.startswith("motion: static clip") and frozen_fails.startswith("motion: static clip")
    assert cat_fails is None and cat["motion_area"] > 0.05
    assert talk_fails is None and 0.005 < talk["motion_area"] < 0.05
    assert people_fails is None and people["motion_area"] > 0.01
    # the old static rule (mean flow, motion_score < 0.0005) dropped real footage of people under a fixed camera
    assert people["motion_score"] < 0.0005
    # the mean flow of the talking clip is below what the old static rule (motion_score < 0.0005) allowed
    assert talk["motion_score"] < 0.0005 and talk["motion_px"] < 0.1


def test_ocr_burned_in_subtitles():
    from stages.analyzers.ocr import OcrAnalyzer

    subs = analyze(OcrAnalyzer(FilterConfig().ocr), DATA / "subs_720p.mp4")
    plain = analyze(OcrAnalyzer(FilterConfig().ocr), DATA / "nosubs_720p.mp4")
    assert subs["text_area_max"] > 0.04 and subs["text_boxes"] >= 2
    assert subs["text_area_max"] > 10 * (plain["text_area_max"] + 0.001)
    read = analyze(OcrAnalyzer(FilterConfig(ocr={"recognize": True}).ocr), DATA / "subs_720p.mp4")
    assert "quick brown fox" in read["text"] and read["text_area_max"] == pytest.approx(subs["text_area_max"])


def test_ocr_invents_no_text_on_small_real_frames_and_still_reads_small_real_text(tmp_path):
    """160x90-class real footage without text gives no text; a real sign at 160x84 is still read."""
    from conftest import ffmpeg

    from stages.analyzers.ocr import OcrAnalyzer

    small = tmp_path / "bikes_160x90.mp4"
    ffmpeg("-i", str(SAMPLES / "bikes.mp4"), "-vf", "scale=160:90,setsar=1", "-c:v", "libx264", str(small))
    # at 128x72, detection on a frame upscaled to 360 px read a "福" in this animation (before: every 0.5 s)
    tiny = tmp_path / "elephants_128x72.mp4"
    ffmpeg("-i", str(DATA / "katna_elephantsdream_vfr.mp4"), "-vf", "scale=128:72,setsar=1", "-c:v", "libx264",
           "-crf", "28", str(tiny))
    ocr = OcrAnalyzer(FilterConfig(ocr={"sample_every_s": 0.5}).ocr)
    for path in (small, tiny, SAMPLES / "carphone_pristine.mp4", DATA / "katna_cat_static.mp4",
                 DATA / "mma_armwrestle_corrupt.mp4"):
        found = analyze(ocr, path)
        assert found["text_area_max"] == 0 and found["text"] is None, (path.name, found["text"])
    sign = analyze(ocr, DATA / "lightbox_text_160.mp4")
    assert sign["text_area_max"] > 0.1 and sign["text"] is None  # detection only by default
    reading = OcrAnalyzer(FilterConfig(ocr={"recognize": True, "sample_every_s": 0.5}).ocr)
    assert "LIVES" in analyze(reading, DATA / "lightbox_text_160.mp4")["text"]
    for path in (tiny, SAMPLES / "carphone_pristine.mp4"):
        assert analyze(reading, path)["text"] is None, path.name


def test_ocr_counts_only_text_that_reads_as_text(tmp_path):
    """Texture (foliage, paving and a grille, carpet, a stone wall: tests/data/textures_pan.mp4) and
    heavily blurred, compressed animation give detection boxes; recognition on those boxes reads no
    letters there, so no text counts. Real text (subtitles, a sign, captions and the UI text of a
    screen recording, a taxi sign in street footage) still reads."""
    from stages.analyzers.ocr import OcrAnalyzer

    blurred = tmp_path / "bbb_blur_crf40.mp4"
    ffmpeg("-i", str(DATA / "nosubs_720p.mp4"), "-vf", "gblur=sigma=3", "-c:v", "libx264", "-crf", "40", str(blurred))
    verified = OcrAnalyzer(FilterConfig(ocr={"sample_every_s": 0.5}).ocr)
    # detection alone at 360 px (at the default 320 it finds fewer boxes on these textures, but some
    # texture reads as text at any size: recognition is what tells)
    boxes_only = OcrAnalyzer(FilterConfig(ocr={"sample_every_s": 0.5, "verify": False, "size": 360}).ocr)
    for path in (DATA / "textures_pan.mp4", DATA / "katna_elephantsdream_vfr.mp4"):
        assert analyze(boxes_only, path)["text_area_max"] > 0.02, path.name  # detection alone invents text
    for path in (DATA / "textures_pan.mp4", DATA / "katna_elephantsdream_vfr.mp4", blurred, DATA / "nosubs_720p.mp4",
                 DATA / "mma_skeleton_fixed_camera.mp4"):
        found = analyze(verified, path)
        assert found["text_area_max"] == 0 and found["text_boxes"] == 0, (path.name, found)
    reading = OcrAnalyzer(FilterConfig(ocr={"sample_every_s": 0.5, "recognize": True}).ocr)
    subs = analyze(reading, DATA / "subs_720p.mp4")
    assert subs["text_area_max"] > 0.04 and "Subtitle line two 12345" in subs["text"]
    sign = analyze(reading, DATA / "lightbox_text_160.mp4")
    assert sign["text_area_max"] > 0.1 and "LIVES" in sign["text"]
    assert "TAXI" in analyze(reading, SAMPLES / "bikes.mp4")["text"]  # the sign on a taxi roof in the street
    edit = analyze(reading, DATA / "pexels_fastcut_vertical.mp4")  # captions, then an editing timeline
    assert edit["text_area_max"] > 0.02 and "SIMPLE" in edit["text"] and ".MP4" in edit["text"]


def ocr_items(analyzer) -> list:
    """The OCR inputs of three real videos (subtitles, a texture pan, a fast-cut edit), sampled twice a second."""
    items = []
    for path in (DATA / "subs_720p.mp4", DATA / "textures_pan.mp4", DATA / "pexels_fastcut_vertical.mp4"):
        scan_clips(str(path), [{"start_s": 0.0, "end_s": None}], [analyzer]).__next__()
        items += analyzer.collected()
    return items


def ocr_found(analyzer, engine, items, monkeypatch) -> list:
    """Every image's text area and (box, text, score) list from one engine, rounded for comparing."""
    from stages.analyzers.ocr import OcrAnalyzer

    monkeypatch.setattr(OcrAnalyzer, "model", property(lambda self: engine))
    return [(area, [(np.asarray(box).round(2).tolist(), text, round(score, 4)) for box, text, score in boxes])
            for area, boxes in analyzer.infer(items)]


def test_ocr_detects_several_images_at_once_with_the_same_boxes(monkeypatch):
    """With onnxruntime on the CPU the detector runs one image per core of the task's budget at once,
    each run on one thread (recognition keeps the budget's threads): every box, text and area is the
    one found an image at a time."""
    from stages.analyzers.ocr import OcrAnalyzer

    collect = OcrAnalyzer(FilterConfig(ocr={"sample_every_s": 0.5, "recognize": True, "runtime": "onnxruntime"}).ocr)
    items = ocr_items(collect)
    engines = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("CURATE_THREADS", threads)
        engines[threads] = collect.load("cpu")
    assert engines["1"].runs_at_once == 1 and engines["2"].runs_at_once == 2
    assert engines["2"].text_det.infer.session.get_session_options().intra_op_num_threads == 1
    assert engines["2"].text_rec.session.session.get_session_options().intra_op_num_threads == 2
    found = {threads: ocr_found(collect, engine, items, monkeypatch) for threads, engine in engines.items()}
    assert len(found["2"]) == len(items) > 20
    assert found["1"] == found["2"]
    assert any("Subtitle" in text for _, boxes in found["2"] for _, text, _ in boxes)


def test_ocr_on_openvino_finds_what_onnxruntime_finds(monkeypatch):
    """runtime auto runs RapidOCR's own model files on OpenVINO on the CPU (one image at a time, on
    the task's threads): the same boxes, texts and text areas as onnxruntime on real frames."""
    from stages.analyzers.ocr import OcrAnalyzer
    from stages.openvino_session import OpenVinoSession

    monkeypatch.setenv("CURATE_THREADS", "2")
    on = {runtime: OcrAnalyzer(FilterConfig(ocr={"sample_every_s": 0.5, "recognize": True, "runtime": runtime}).ocr)
          for runtime in ("onnxruntime", "auto")}
    items = ocr_items(on["auto"])
    engines = {runtime: analyzer.load("cpu") for runtime, analyzer in on.items()}
    detector, recognizer = engines["auto"].text_det.infer.session, engines["auto"].text_rec.session.session
    assert isinstance(detector, OpenVinoSession) and isinstance(recognizer, OpenVinoSession)
    assert engines["auto"].runs_at_once == 1 and detector.config["INFERENCE_NUM_THREADS"] == 2
    assert detector.config["INFERENCE_PRECISION_HINT"] == "f32"  # never bfloat16, whatever the CPU has
    # the recognizer's character list comes from the model file's metadata, as with onnxruntime
    assert engines["auto"].text_rec.postprocess_op.character == engines["onnxruntime"].text_rec.postprocess_op.character
    theirs = ocr_found(on["onnxruntime"], engines["onnxruntime"], items, monkeypatch)
    ours = ocr_found(on["auto"], engines["auto"], items, monkeypatch)
    assert len(ours) == len(theirs) == len(items) > 20
    for (area, boxes), (their_area, their_boxes) in zip(ours, theirs):
        assert area == pytest.approx(their_area, abs=1e-4)
        assert [text for _, text, _ in boxes] == [text for _, text, _ in their_boxes]
        for (box, _, score), (their_box, _, their_score) in zip(boxes, their_boxes):
            assert np.asarray(box) == pytest.approx(np.asarray(their_box), abs=0.5)
            assert score == pytest.approx(their_score, abs=1e-3)
    assert any("Subtitle" in text for _, boxes in ours for _, text, _ in boxes)


def test_ocr_detector_input_is_rapidocrs_own_bit_for_bit():
    """The detector's input comes from a table of the 256 values per channel, computed with RapidOCR's
    own expression: the same float32 array as RapidOCR's pre-processing, for any size and any mean
    and std; anything but an 8-bit 3-channel image goes through RapidOCR's own code."""
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    from stages.analyzers.ocr import TablePreProcess

    rng = np.random.default_rng(7)
    for shape in [(320, 576, 3), (90, 160, 3), (333, 517, 3), (5, 5, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        for mean, std in (([0.5] * 3, [0.5] * 3), ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])):
            theirs, ours = DetPreProcess(4096, "max", mean, std)(image), TablePreProcess(
                DetPreProcess(4096, "max", mean, std))(image)
            assert (theirs is None and ours is None) or (ours.dtype == theirs.dtype and np.array_equal(ours, theirs))
    floats = rng.random((64, 96, 3)).astype(np.float32)
    assert np.array_equal(TablePreProcess(DetPreProcess(4096, "max"))(floats), DetPreProcess(4096, "max")(floats))


def test_ocr_runtime_openvino_says_what_to_do_where_it_cannot_run(monkeypatch):
    from curate.errors import CurateError
    from stages import openvino_session
    from stages.analyzers.ocr import OcrAnalyzer

    asked = OcrAnalyzer(FilterConfig(ocr={"runtime": "openvino"}).ocr)
    with pytest.raises(CurateError, match="runtime: openvino runs on the CPU.*filter.ocr.runtime: onnxruntime"):
        asked.openvino("cuda")
    monkeypatch.setattr(openvino_session, "installed", lambda: False)
    with pytest.raises(CurateError, match="needs openvino, which is not installed.*filter.ocr.runtime: onnxruntime"):
        asked.openvino("cpu")
    assert not OcrAnalyzer(FilterConfig().ocr).openvino("cpu")  # auto: onnxruntime where OpenVINO is absent


def test_nsfw_runs_the_shipped_model():
    from stages.analyzers.nsfw import NsfwAnalyzer

    result = analyze(NsfwAnalyzer(FilterConfig().nsfw), SAMPLES / "carphone_pristine.mp4")
    assert 0.0 <= result["nsfw_mean"] <= result["nsfw_score"] < 0.5


def test_nsfw_scores_equal_nudenets_own_detections():
    """The vectorised post-processing gives NudeNet's own answer, frame by frame (a cartoon frame of
    Big Buck Bunny scores about 0.75 on an exposed class, other frames lower), and the skin check
    applied to NudeNet's own boxes gives the same skin-checked scores."""
    from stages.analyzers.nsfw import NsfwAnalyzer, frame_score

    analyzer = NsfwAnalyzer(FilterConfig().nsfw)
    analyzer.preflight()
    frames = []
    for path in (DATA / "nosubs_720p.mp4", SAMPLES / "bikes.mp4", DATA / "mma_armwrestle_corrupt.mp4",
                 DATA / "katna_cat_static.mp4"):
        frames += [f.image(analyzer.need) for f in iter_frames(str(path))][::12]
    ours = analyzer.infer(frames)  # on the CPU, parts of the batch at once (one per core), each on one thread
    at_once, analyzer.model.runs_at_once = analyzer.model.runs_at_once, 1
    assert analyzer.infer(frames) == ours  # one run over the whole batch: the same scores, bit for bit
    analyzer.model.runs_at_once = at_once
    found = analyzer.model.detect_batch(frames, batch_size=4)
    theirs = [frame_score(f) for f in found]
    checked = [frame_score(f, image, 0.4) for f, image in zip(found, frames)]
    assert [raw for raw, _ in ours] == pytest.approx(theirs, abs=1e-6) and max(theirs) > 0.5
    assert [score for _, score in ours] == pytest.approx(checked, abs=1e-6) and max(checked) > 0.2


# Licensed real footage: animation, animals, sport, people, skin (a baby in a bouncer, bare arms).
HARMLESS = {"animation": ["bigbuckbunny", "katna_elephantsdream_vfr"],
            "animals": ["katna_cat_static", "iio_cockatoo"],
            "sport": ["pexels_skate_motion", "mma_armwrestle_corrupt", "bikes"],
            "people": ["mma_skeleton_fixed_camera", "carphone_pristine"]}


def _footage(name):
    """A test video by name: the repo's copy, else the shared test data (skipped where neither is)."""
    for folder in (DATA, SAMPLES, Path("/work/shared/testdata/real"), Path("/work/shared/testdata/src")):
        if (folder / f"{name}.mp4").is_file():
            return folder / f"{name}.mp4"
    return DATA / "nosubs_720p.mp4" if name == "bigbuckbunny" else None


def test_nsfw_spares_cartoons_animals_and_sport_and_keeps_exposed_detections_on_skin(capsys):
    """NudeNet alone gives a Big Buck Bunny frame 0.75 on an exposed class; with the skin check
    (exposed classes only, max over frames sampled every 0.5 s) every harmless video scores far
    below the threshold, while an exposed-class detection on real skin (a baby's bare chest in
    the cat video) keeps its score."""
    from stages.analyzers.nsfw import NsfwAnalyzer

    analyzer = NsfwAnalyzer(FilterConfig(nsfw={"sample_every_s": 0.5}).nsfw)
    threshold = FilterConfig().nsfw.threshold
    scores = {}
    for group, names in HARMLESS.items():
        for name in names:
            path = _footage(name)
            if path is not None:
                scores[name] = (group, analyze(analyzer, path))
    with capsys.disabled():
        print()
        for name, (group, r) in scores.items():
            print(f"nsfw {group:9} {name:28} raw {r['nsfw_raw']:.3f} score {r['nsfw_score']:.3f} "
                  f"mean {r['nsfw_mean']:.3f}")
    assert len(scores) >= 6
    assert all(r["nsfw_score"] < threshold / 2 for _, r in scores.values()), scores  # pass with margin
    cartoon = scores.get("bigbuckbunny", (None, analyze(analyzer, DATA / "nosubs_720p.mp4")))[1]
    assert cartoon["nsfw_raw"] > 0.6 and cartoon["nsfw_score"] == 0  # NudeNet's cartoon breast: fur, no skin
    baby = scores["katna_cat_static"][1]
    assert baby["nsfw_score"] == baby["nsfw_raw"] > 0.2  # an exposed class on real skin still counts


def test_seek_is_frame_accurate_mid_gop():
    """Each frame of the counter video shows its own number: a range starting mid-GOP must begin
    with exactly the frame at its start time, identical to the one a full decode gives."""
    need = FrameNeed(short_side=90, color="gray")
    full = [f.image(need) for f in iter_frames(str(DATA / "psd_counter_10fps.mp4"))]
    part = list(iter_frames(str(DATA / "psd_counter_10fps.mp4"), [(1.7, 2.2)]))
    assert [round(f.time, 2) for f in part] == [1.7, 1.8, 1.9, 2.0, 2.1]
    for frame in part:
        assert np.array_equal(frame.image(need), full[round(frame.time * 10)])


def test_rotation_and_odd_sizes(tmp_path):
    src = SAMPLES / "carphone_pristine.mp4"
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tmp_path / "rot.mp4"))
    ffmpeg("-i", str(src), "-vf", "scale=161:121,setsar=1", "-c:v", "libx264", "-pix_fmt", "yuv444p",
           str(tmp_path / "odd.mp4"))
    first = next(iter_frames(str(tmp_path / "rot.mp4")))
    assert first.rotation == 90 and first.image(FrameNeed(color="rgb")).shape == (176, 144, 3)
    assert first.image(FrameNeed(short_side=72, color="gray")).shape == (88, 72)
    odd = next(iter_frames(str(tmp_path / "odd.mp4")))
    assert odd.image(FrameNeed(color="bgr")).shape == (121, 161, 3)


def _filter_run(tmp_path, workdir, names, extra=""):
    inputs = tmp_path / "in"
    inputs.mkdir(exist_ok=True)
    for path in names:
        (inputs / path.name).write_bytes(path.read_bytes())
    cfg = write_config(tmp_path / "c.yaml", "split:\n  min_s: 0.5\nfilter:\n  nsfw:\n    enabled: false\n" + extra)
    curate("local", "-w", workdir, "-i", inputs, "-c", cfg, "--no-progress")
    return cfg, pl.read_parquet(workdir / "metadata" / "clips.parquet")


def test_thresholds_change_decisions_without_rerunning(tmp_path, workdir):
    cfg, table = _filter_run(tmp_path, workdir, [SAMPLES / "flash_3.mp4", DATA / "still_4s.mp4", DATA / "pan_4px.mp4"])
    by_name = {r["relpath"]: r for r in table.iter_rows(named=True)}
    assert by_name["flash_3.mp4"]["status"] == "filtered" and by_name["flash_3.mp4"]["reason"].startswith("flash:")
    assert by_name["still_4s.mp4"]["status"] == "filtered" and "static clip" in by_name["still_4s.mp4"]["reason"]
    assert by_name["pan_4px.mp4"]["status"] == "ok" and by_name["pan_4px.mp4"]["keep"]
    done = (workdir / "markers" / "filter" / "00000.done").read_text()
    # Looser thresholds: only the export changes, the analyzers do not run again.
    cfg.write_text(cfg.read_text().replace(
        "filter:\n", "filter:\n  flash:\n    max_flash_ratio: 0.5\n  motion:\n    record_only: true\n"))
    curate("local", "-w", workdir, "-c", cfg, "-i", tmp_path / "in", "--no-progress")
    assert (workdir / "markers" / "filter" / "00000.done").read_text() == done
    table = pl.read_parquet(workdir / "metadata" / "clips.parquet")
    assert set(table["status"]) == {"ok"} and table["keep"].all()
    assert table.filter(pl.col("relpath") == "flash_3.mp4")["flash_ratio"][0] > 0.02  # the score is still there


def test_cascade_skips_expensive_analyzers(tmp_path, workdir):
    _, table = _filter_run(tmp_path, workdir, [SAMPLES / "flash_3.mp4", DATA / "pan_4px.mp4"],
                           "  cascade: true\n")
    flash = table.filter(pl.col("relpath") == "flash_3.mp4").row(0, named=True)
    pan = table.filter(pl.col("relpath") == "pan_4px.mp4").row(0, named=True)
    assert flash["skipped_by"] == "flash" and flash["text_area_max"] is None and flash["status"] == "filtered"
    assert pan["skipped_by"] is None and pan["text_area_max"] is not None and pan["status"] == "ok"


def test_missing_model_package_stops_before_work(tmp_path, workdir, monkeypatch):
    proc = local_with_import_blocked(tmp_path, workdir, "rapidocr_onnxruntime", "--json")
    # every stage's preflight runs before any task: nothing was fetched, split or filtered
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "rapidocr-onnxruntime" in proc.stderr and "scripts/setup.sh" in proc.stderr
    assert not (workdir / "markers").exists() or not any((workdir / "markers").rglob("*.done"))


def test_clip_files_only_for_kept_clips_with_resize(tmp_path, workdir):
    import subprocess

    cfg, table = _filter_run(tmp_path, workdir, [SAMPLES / "flash_3.mp4", DATA / "pan_4px.mp4"],
                             "clips:\n  enabled: true\n  resize: '256'\n  fit: crop\n")
    kept = table.filter(pl.col("keep"))
    assert kept["relpath"].to_list() == ["pan_4px.mp4"]
    assert table.filter(~pl.col("keep") & pl.col("clip_id").is_not_null())["clip_path"].to_list() == [None]
    (path,) = kept["clip_path"].to_list()
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                            "stream=width,height,nb_read_frames", "-of", "json", path],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["width"], stream["height"]) == (256, 256)
    assert int(stream["nb_read_frames"]) == kept["end_frame"][0] - kept["start_frame"][0]
    mtime = os.stat(path).st_mtime
    curate("export", "-w", workdir)  # same settings: the file is kept, not written again
    assert os.stat(path).st_mtime == mtime
