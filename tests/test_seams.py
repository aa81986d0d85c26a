"""The seams every stage builds on: the decode loop, decisions as expressions, the model base,
the secret scrubber, and light imports for the commands that do no stage work."""

import subprocess
import sys

import polars as pl
import pytest
from conftest import DATA, SAMPLES, curate, write_config

from curate.config import validate_config
from curate.decisions import apply_decisions, run_checks
from stages.decode import scan_clips
from stages.sampling import FrameNeed

COUNTER = str(DATA / "psd_counter_10fps.mp4")  # 3 s at 10 fps, each frame shows its own number


class Recorder:
    """A consumer that records what the loop hands it."""

    def __init__(self, need):
        self.need = need
        self.calls = []

    def begin(self, clip):
        self.calls.append(("begin", clip["clip_id"]))
        self.times = []

    def feed(self, frame):
        self.times.append(round(frame.time, 2))

    def end(self):
        self.calls.append(("end",))
        return self.times


def scan(clips, *needs):
    consumers = [Recorder(n) for n in needs]
    seen = []
    for result in scan_clips(COUNTER, clips, consumers):
        seen.append((result.clip["clip_id"], result.frames, [c.end() for c in consumers]))
    return seen, consumers


def test_frames_spread_over_each_clip_and_pairs_at_a_rate():
    clips = [{"clip_id": "b", "start_s": 2.0, "end_s": 3.0}, {"clip_id": "a", "start_s": 0.0, "end_s": 1.6}]
    seen, _ = scan(clips, FrameNeed(count=4), FrameNeed(per_second=1.0, pairs=True), FrameNeed(every=5))
    (a_id, a_frames, (a_spread, a_pairs, a_every)), (b_id, b_frames, (b_spread, b_pairs, _)) = seen
    assert (a_id, a_frames, b_id, b_frames) == ("a", 16, "b", 10)  # in start order, frames inside the range
    assert a_spread == [0.2, 0.6, 1.0, 1.4]  # the first frame at or after the middle of each quarter
    assert b_spread == [2.2, 2.4, 2.7, 2.9]
    assert a_pairs == [0.0, 0.1, 1.0, 1.1] and b_pairs == [2.0, 2.1]  # a frame and its successor, each second
    assert a_every == [0.0, 0.5, 1.0, 1.5]


def test_more_wanted_frames_than_the_clip_has_and_empty_clips():
    clips = [{"clip_id": "short", "start_s": 1.0, "end_s": 1.3},
             {"clip_id": "empty", "start_s": 1.32, "end_s": 1.38},  # between two frames
             {"clip_id": "past-end", "start_s": 50.0, "end_s": 51.0}]
    seen, (recorder,) = scan(clips, FrameNeed(count=8))
    # 8 slice middles over 3 frames: each frame at most once, the first slices' middles fall after frame 1.0,
    # which a sampling-only scan then never decodes
    assert seen == [("short", 2, [[1.1, 1.2]]), ("empty", 0, [[]]), ("past-end", 0, [[]])]
    # every clip is begun before its frames and handed back for `end` exactly once
    assert [c[0] for c in recorder.calls] == ["begin", "end"] * 3


def test_whole_video_as_one_open_clip():
    seen, _ = scan([{"clip_id": "all", "start_s": 0.0, "end_s": None}], FrameNeed(every=1))
    ((_, frames, (times,)),) = seen
    assert frames == len(times) > 20 and times[:3] == [0.0, 0.1, 0.2]
    with pytest.raises(ValueError, match="end time"):
        scan([{"clip_id": "all", "start_s": 0.0, "end_s": None}], FrameNeed(count=3))


def clip_table(**scores):
    base = {"video_id": ["v"] * 4, "clip_id": ["c1", "c2", "c3", None], "status": ["ok", "ok", "ok", "failed"],
            "reason": [None, None, None, "decode failed"], "clip_duration_s": [0.5, 5.0, 5.0, None],
            "width": [640, 160, 640, None], "height": [360, 90, 360, None]}
    return pl.DataFrame({**base, **{k: v + [None] for k, v in scores.items()}})


def test_every_failing_check_is_listed_and_nulls_pass():
    config = validate_config({"filter": {"min_duration_s": 1.0, "min_short_side": 120}})
    table = clip_table(flash_ratio=[0.5, 0.0, None], motion_area=[0.0001, 0.01, 0.01],
                       text_area_max=[0.3, 0.0, 0.0], nsfw_score=[0.1, 0.95, None])
    out = apply_decisions(table, config)
    rows = out.to_dicts()
    assert rows[0]["status"] == "filtered" and rows[0]["reason"].split("; ") == [
        "duration: clip_duration_s 0.5 < min_duration_s 1", "flash: flash_ratio 0.5 > max_flash_ratio 0.02",
        "motion: static clip, motion_area 0.0001 < min_area 0.001",
        "ocr: text_area_max 0.3 > text_area_threshold 0.02"]
    assert rows[1]["reason"] == ("resolution: short side 90 px < min_short_side 120; "
                                 "nsfw: nsfw_score 0.95 > threshold 0.8")
    assert rows[2]["status"] == "ok" and rows[2]["keep"]  # null scores were not measured: they pass
    assert rows[3]["status"] == "failed" and rows[3]["reason"] == "decode failed" and not rows[3]["keep"]
    assert out["keep"].to_list() == [False, False, True, False]


def test_record_only_and_missing_columns_skip_checks():
    config = validate_config({"filter": {"flash": {"record_only": True}, "nsfw": {"enabled": False}}})
    assert {c.name for c in run_checks(config)} == {"motion", "ocr"}
    table = clip_table(flash_ratio=[0.9, 0.9, 0.9])  # no motion or ocr columns: those checks do not apply
    assert apply_decisions(table, config)["keep"].to_list() == [True, True, True, False]


def test_heavy_packages_stay_out_of_config_status_and_registries():
    code = ("import sys; from curate.config import validate_config; from curate import status, plan, export; "
            "from stages import STAGES; from stages.analyzers import analyzer_classes; "
            "validate_config({}); [s.load() for s in STAGES.values()]; analyzer_classes(); "
            "print(sorted(m for m in ('polars', 'numpy', 'torch', 'cv2', 'onnxruntime', 'av', 'scenedetect') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_gpu_stops_before_any_work(tmp_path, workdir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.mp4").write_bytes((SAMPLES / "flash_3.mp4").read_bytes())
    cfg = write_config(tmp_path / "c.yaml", "filter:\n  ocr:\n    device: cuda:0\n")
    proc = curate("local", "-w", workdir, "-i", inputs, "-c", cfg, "--no-progress", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # every stage's preflight comes first
    assert "filter.ocr.device = cuda:0" in proc.stderr and "set filter.ocr.device: cpu" in proc.stderr
    assert not list(workdir.glob("markers/*/*.done"))
    bad = curate("local", "-w", tmp_path / "w2", "-i", inputs, "-c",
                 write_config(tmp_path / "d.yaml", "split:\n  device: gpu0\n"), check=False)
    assert bad.returncode == 2 and "split.device = 'gpu0': use cpu, cuda or cuda:N" in bad.stderr


SECRET = "sk-or-v1-TEST-secret-value-42"


def test_secrets_never_reach_the_run_directory_or_logs(tmp_path, workdir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.mp4").write_bytes((SAMPLES / "flash_3.mp4").read_bytes())
    # A failure whose message and traceback carry the key (as a library echoing a request might).
    leak = tmp_path / "leak"
    leak.mkdir()
    (leak / "rapidocr_onnxruntime.py").write_text(
        "import os\nraise RuntimeError('auth failed for key ' + os.environ['OPENROUTER_API_KEY'])\n")
    cfg = write_config(tmp_path / "c.yaml", f"slurm:\n  setup: ['echo {SECRET}']\n")
    env = {"OPENROUTER_API_KEY": SECRET, "PYTHONPATH": str(leak)}
    proc = curate("local", "-w", workdir, "-i", inputs, "-c", cfg, "--no-progress", check=False, env=env)
    assert proc.returncode == 2 and "auth failed for key <$OPENROUTER_API_KEY>" in proc.stderr  # the preflight
    # the same failure inside a task: its marker, traceback and output
    tasks = [curate("run", "-w", workdir, "--stage", stage, "--index", "0", check=False, env=env)
             for stage in ("fetch", "split", "filter")]
    assert [t.returncode for t in tasks] == [0, 0, 1] and "<$OPENROUTER_API_KEY>" in tasks[-1].stderr
    dry = curate("submit", "-w", workdir, "-c", cfg, "--dry-run", env={"OPENROUTER_API_KEY": SECRET})
    assert "echo <$OPENROUTER_API_KEY>" in dry.stdout
    written = [p for p in workdir.rglob("*") if p.is_file()]
    failed = [p for p in written if p.name == "00000.failed"]
    assert failed and "<$OPENROUTER_API_KEY>" in failed[0].read_text()
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    outputs = [proc, dry, *tasks]
    assert all(SECRET not in p.stdout + p.stderr for p in outputs)


@pytest.fixture(scope="module")
def ten_minutes(tmp_path_factory):
    """Ten minutes of moving pattern at 25 fps, keyframe every 2 s, with a white flash at 31.00-31.07 s."""
    from conftest import ffmpeg

    long = tmp_path_factory.mktemp("long") / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x54:rate=25:duration=600", "-g", "50", "-pix_fmt", "yuv420p",
           "-vf", "drawbox=c=white:t=fill:enable='between(t,31,31.07)'", "-preset", "ultrafast", str(long))
    return str(long)


def test_a_long_clip_sampled_by_time_costs_its_samples(ten_minutes):
    """One frame every 20 s: the decode loop seeks from sample to sample."""
    sampled, dense = Recorder(FrameNeed(per_second=0.05)), Recorder(FrameNeed(every=500))
    clip = [{"clip_id": "all", "start_s": 0.0, "end_s": 600.0}]
    (scan,) = scan_clips(ten_minutes, clip, [sampled])
    sampled_times = sampled.end()
    assert sampled_times == [20.0 * i for i in range(30)]  # the same frames a full decode samples
    assert scan.frames <= 30 * 13  # frames kept: the half-second window after each sample
    (full,) = scan_clips(ten_minutes, clip, [dense])
    assert full.frames == 15000 and dense.end() == sampled_times


def test_a_whole_video_costs_the_default_analyzers_their_samples_not_a_full_decode(ten_minutes):
    from curate.config import Config
    from stages.analyzers import build_analyzers

    analyzers = [a for a in build_analyzers(Config().filter) if a.name in ("flash", "motion")]
    bursts = Recorder(analyzers[0].need)
    whole = {"clip_id": "all", "start_s": 0.0, "end_s": 600.0}
    (scan,) = scan_clips(ten_minutes, [whole], analyzers + [bursts])
    flash, motion = (a.end() for a in analyzers)
    # 30 bursts of 2 s (flash) hold motion's 30 pairs: a tenth of the video is decoded
    assert scan.frames <= 30 * 2 * 25 + 30 and len(bursts.end()) == 30 * 50
    assert motion["motion_pairs"] == 30 and motion["motion_px"] > 0.05
    assert flash["flash_events"] == 1  # the flash at 31 s lies in the burst at 30-32 s, and no gap reads as one
    # a clip short enough is still read in full, every frame
    short = Recorder(analyzers[0].need)
    (scan,) = scan_clips(ten_minutes, [{"clip_id": "s", "start_s": 100.0, "end_s": 150.0}], [short])
    assert scan.frames == len(short.end()) == 1250
