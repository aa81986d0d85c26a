"""The caption stage's promises under faults, against the local test server (tests/fake_llm.py) and
real `curate` processes: a kill -9 pays nothing twice, max_cost_usd holds for parallel tasks, a
stopped task stops sending at once, and a key a server echoes never reaches a record."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import polars as pl
import pytest
from conftest import SAMPLES, curate, write_config
from fake_llm import FakeCaptionServer

KEY = "sk-test-caption-0123456789"
ENV = {"TEST_CAPTION_KEY": KEY}
BASE = "filter:\n  ocr: {enabled: false}\n  nsfw: {enabled: false}\n"


@pytest.fixture(scope="module")
def scored_parts(tmp_path_factory):
    """fetch -> score over the four samples, one video per index (index 0: 6 clips), done once."""
    root = tmp_path_factory.mktemp("caption_faults")
    inputs = root / "in"
    inputs.mkdir()
    for path in SAMPLES.glob("*.mp4"):
        shutil.copy(path, inputs / path.name)
    curate("local", "-w", root / "run", "-i", inputs, "-c", write_config(root / "base.yaml", BASE),
           "--parts", "4", "--no-progress")
    return root / "run"


def caption_config(scored_parts, tmp_path, server, extra: str):
    """A copy of the scored run with caption on, frozen in run.yaml, and its config."""
    workdir = tmp_path / "run"
    shutil.copytree(scored_parts, workdir)
    cfg = write_config(tmp_path / "c.yaml", BASE + "caption:\n  enabled: true\n  model: test/vision-model\n"
                       f"  api_key_env: TEST_CAPTION_KEY\n  base_url: {server.url}/v1\n" + extra)
    curate("manifest", "-w", workdir, "-c", cfg)
    return workdir, cfg


def start_task(workdir, index=0) -> subprocess.Popen:
    """`curate run` for one caption task, as a Slurm array task runs it."""
    return subprocess.Popen([sys.executable, "-m", "curate", "run", "-w", str(workdir), "--stage", "caption",
                             "--index", str(index)], env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, task, timeout=60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline and task.poll() is None, task.communicate() if task.poll() is not None else ""
        time.sleep(0.02)


def test_a_kill_right_after_answers_pays_for_none_of_them_twice(scored_parts, tmp_path):
    # Three answers, then the server hangs: the task holds three answers it must already have written.
    with FakeCaptionServer(script=["ok"] * 3 + ["hang"] * 2, hang_s=30) as server:
        workdir, _ = caption_config(scored_parts, tmp_path, server, "  max_workers: 2\n")
        task = start_task(workdir)
        wait_for(lambda: len(server.answered()) >= 3 and len(server.requests) >= 5, task)
        time.sleep(0.5)  # the answers are in the task; a buffer would hold them now
        os.kill(task.pid, signal.SIGKILL)
        task.wait()
        curate("run", "-w", workdir, "--stage", "caption", "--index", "0", env=ENV)
    paid = Counter(server.answered())
    assert len(paid) == 6 and max(paid.values()) == 1, paid  # every clip answered once, across the kill
    curate("export", "-w", workdir)
    clips = pl.read_parquet(workdir / "metadata" / "clips.parquet").filter(pl.col("status") == "ok")
    assert set(clips.filter(pl.col("caption").is_not_null())["clip_id"]) == set(paid)


def test_max_cost_is_one_budget_for_parallel_tasks(scored_parts, tmp_path):
    with FakeCaptionServer(cost=0.01, latency_s=0.3) as server:
        workdir, cfg = caption_config(scored_parts, tmp_path, server, "  max_workers: 4\n  max_cost_usd: 0.025\n")
        proc = curate("local", "-w", workdir, "-c", cfg, "-j", "4", "--no-progress", check=False, env=ENV)
    assert proc.returncode == 1
    # $0.02 < $0.025 allows a third answer, as one task sending one at a time would; never a fourth
    assert len(server.requests) == 3, server.clip_ids()
    failed = [json.loads(p.read_text())["error"] for p in (workdir / "markers" / "caption").glob("*.failed")]
    assert failed and all("caption.max_cost_usd=0.025 reached: $0.0300" in error for error in failed)


def test_a_stopped_task_sends_nothing_more_and_exits_at_once(scored_parts, tmp_path):
    with FakeCaptionServer(script=["hang"] * 20, hang_s=60) as server:
        workdir, _ = caption_config(scored_parts, tmp_path, server,
                                    "  max_workers: 2\n  timeout_s: 2\n  max_retries: 3\n")
        task = start_task(workdir)
        wait_for(lambda: len(server.requests) >= 2, task)
        stopped = time.time()
        task.send_signal(signal.SIGTERM)
        try:
            task.wait(timeout=10)
        except subprocess.TimeoutExpired:
            task.kill()
        took = time.time() - stopped
        time.sleep(0.5)  # a retry that outlived the task would arrive now
        late = [r for r in server.requests if r["at"] > stopped]
    assert took < 3, f"took {took:.1f} s to stop"
    assert task.returncode == 128 + signal.SIGTERM
    assert not late, late
    assert not (workdir / "markers" / "caption" / "00000.claim").exists()


def test_a_key_echoed_by_the_server_never_reaches_a_record(scored_parts, tmp_path):
    with FakeCaptionServer(script=["echo"] * 20) as server:
        workdir, cfg = caption_config(scored_parts, tmp_path, server, "")
        curate("local", "-w", workdir, "-c", cfg, "--no-progress", env=ENV)
    assert server.requests and all(r["auth"] == f"Bearer {KEY}" for r in server.requests)
    for path in [workdir / "stages" / "caption" / "part-00000.parquet", workdir / "metadata" / "clips.parquet"]:
        errors = pl.read_parquet(path)["caption_error"].drop_nulls().to_list()
        assert errors and all("<$TEST_CAPTION_KEY>" in e and KEY not in e for e in errors), errors
    for path in [p for p in workdir.rglob("*") if p.is_file()]:
        assert KEY.encode() not in path.read_bytes(), path
