"""A task's thread budget reaches the decoder's and the model sessions' thread pools."""

import os

import pytest

from stages.cpus import task_threads


def test_thread_budget_from_the_executor_then_slurm(monkeypatch):
    monkeypatch.delenv("CURATE_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert task_threads() == 0  # none set: the libraries choose
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert task_threads() == 4
    monkeypatch.setenv("CURATE_THREADS", "1")
    assert task_threads() == 1  # the local executor's share wins over the job's CPUs
    monkeypatch.setenv("CURATE_THREADS", "lots")
    assert task_threads() == 4


def test_onnx_sessions_take_the_budget(monkeypatch):
    from stages.analyzers.nsfw import NsfwAnalyzer
    from stages.analyzers.ocr import OcrAnalyzer
    from stages.filter import FilterConfig

    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CURATE_THREADS", "1")
    nsfw = NsfwAnalyzer(FilterConfig().nsfw).load("cpu")
    assert nsfw.onnx_session.get_session_options().intra_op_num_threads == 1
    ocr = OcrAnalyzer(FilterConfig(ocr={"runtime": "onnxruntime"}).ocr).load("cpu")
    assert ocr.text_det.infer.session.get_session_options().intra_op_num_threads == 1
    if OcrAnalyzer(FilterConfig().ocr).openvino("cpu"):  # runtime auto: OpenVINO on the same budget
        ocr = OcrAnalyzer(FilterConfig().ocr).load("cpu")
        for session in (ocr.text_det.infer.session, ocr.text_rec.session.session):
            assert session.config["INFERENCE_NUM_THREADS"] == 1
    monkeypatch.delenv("CURATE_THREADS")
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    # no budget: every core the task may run on, one image batch each, each run on one thread
    nsfw = NsfwAnalyzer(FilterConfig().nsfw).load("cpu")
    cores = len(os.sched_getaffinity(0))
    assert nsfw.runs_at_once == cores
    assert nsfw.onnx_session.get_session_options().intra_op_num_threads == (1 if cores > 1 else 0)


def test_onnx_sessions_sleep_between_runs_and_keep_an_arena(monkeypatch):
    """Idle onnxruntime threads must not spin (they would burn the core the decoder or the other model
    needs), and RapidOCR's sessions keep onnxruntime's memory arena, which RapidOCR itself turns off."""
    from stages.analyzers.nsfw import NsfwAnalyzer
    from stages.analyzers.ocr import OcrAnalyzer
    from stages.filter import FilterConfig

    pytest.importorskip("onnxruntime")
    monkeypatch.delenv("CURATE_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    nsfw = NsfwAnalyzer(FilterConfig().nsfw).load("cpu").onnx_session.get_session_options()
    assert nsfw.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    ocr = OcrAnalyzer(FilterConfig(ocr={"runtime": "onnxruntime"}).ocr).load("cpu")
    for holder in (ocr.text_det.infer, ocr.text_cls.infer, ocr.text_rec.session):
        options = holder.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.enable_cpu_mem_arena


def test_opencv_takes_the_budget_in_a_decode(tmp_path):
    """A task's decode holds OpenCV's thread pool to the task's budget (a fresh interpreter: the pool
    is process-wide)."""
    import subprocess
    import sys

    from conftest import SAMPLES

    code = ("import cv2; from stages.decode import iter_frames; before = cv2.getNumThreads(); "
            f"next(iter(iter_frames({str(SAMPLES / 'flash_3.mp4')!r}))); print(before, cv2.getNumThreads())")
    env = {**os.environ, "CURATE_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    before, after = out.split()
    assert after == "1"
    if len(os.sched_getaffinity(0)) > 1:
        assert before != "1"  # OpenCV's own default was a thread per core: the decode changed it


def test_decoder_runs_ahead_of_the_budget_with_the_same_frames(monkeypatch):
    """Two frame threads more than the budget (each holds a frame in flight, so the decoder keeps
    working while a consumer is on a slow frame); the decoded frames are the same bit for bit."""
    import hashlib

    from conftest import SAMPLES

    from stages.cpus import decoder_threads
    from stages.decode import iter_frames

    assert [decoder_threads(b) for b in (0, 1, 2, 4, 15, 32)] == [0, 1, 4, 6, 16, 32]  # 0: FFmpeg's choice

    def digests(budget: str) -> list[str]:
        monkeypatch.setenv("CURATE_THREADS", budget)
        return [hashlib.sha1(frame.source.to_ndarray().tobytes()).hexdigest()
                for frame in iter_frames(str(SAMPLES / "bikes.mp4"))]

    one = digests("1")
    assert len(one) == 250
    assert digests("2") == one


def test_opencv_keeps_to_the_budget_or_a_share_of_it(monkeypatch):
    """OpenCV's pool: the task's budget; inside `opencv_share` (split's videos at once, each on a core
    of its own) the share, and the budget again after it, also when the block fails."""
    cv2 = pytest.importorskip("cv2")
    from stages.cpus import limit_opencv, opencv_share

    monkeypatch.setenv("CURATE_THREADS", "2")
    limit_opencv()
    assert cv2.getNumThreads() == 2
    with pytest.raises(RuntimeError), opencv_share(1):
        assert cv2.getNumThreads() == 1
        limit_opencv()  # what each video's decode calls: the share holds
        assert cv2.getNumThreads() == 1
        raise RuntimeError("a video thread failed")
    assert cv2.getNumThreads() == 2
