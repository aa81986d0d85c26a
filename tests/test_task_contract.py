"""The task contract: idempotent, claim-guarded, atomic, with done/failed markers."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import polars as pl
import pytest
from conftest import SAMPLES, curate, write_config


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("cuts_6shots.mp4", "bikes.mp4", "carphone_pristine.mp4", "flash_3.mp4"):
        (d / name).write_bytes((SAMPLES / name).read_bytes())
    return d


def marker(workdir, stage, index, kind):
    return workdir / "markers" / stage / f"{index:05d}.{kind}"


def done_record(workdir, stage, index):
    return json.loads(marker(workdir, stage, index, "done").read_text())


def test_done_task_is_skipped(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "2")
    first = curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")
    assert "done in" in first.stdout
    record = done_record(workdir, "fetch", 0)
    assert record["rows_out"] >= 1 and record["seconds"] > 0 and record["owner"]["pid"]
    again = curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")
    assert "already done" in again.stdout
    assert done_record(workdir, "fetch", 0) == record


def test_index_from_slurm_env_and_missing_index(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "2")
    proc = curate("run", "-w", workdir, "--stage", "fetch", env={"SLURM_ARRAY_TASK_ID": "1"})
    assert "fetch[1] done" in proc.stdout
    proc = curate("run", "-w", workdir, "--stage", "fetch", check=False)
    assert proc.returncode == 2 and "SLURM_ARRAY_TASK_ID" in proc.stderr and "Traceback" not in proc.stderr
    proc = curate("run", "-w", workdir, "--stage", "fetch", "--index", "7", check=False)
    assert proc.returncode == 2 and "outside this run's manifest (0-1)" in proc.stderr
    proc = curate("run", "-w", workdir, "--stage", "caption", "--index", "0", check=False)
    assert proc.returncode == 2 and "not enabled" in proc.stderr


def test_upstream_not_done_is_refused(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "2")
    proc = curate("run", "-w", workdir, "--stage", "split", "--index", "0", check=False)
    assert proc.returncode == 3 and "stage fetch is not done for index 0" in proc.stderr
    assert not marker(workdir, "split", 0, "failed").exists()
    assert not marker(workdir, "split", 0, "claim").exists()


def test_config_change_redoes_that_stage_and_later_only(tmp_path, inputs, workdir):
    curate("local", "-w", workdir, "-i", inputs, "--parts", "2", "--no-progress")
    fetch_before = [done_record(workdir, "fetch", i) for i in range(2)]
    split_before = [done_record(workdir, "split", i) for i in range(2)]
    cfg = write_config(tmp_path / "c.yaml", "split:\n  threshold: 5.0\n")
    curate("local", "-w", workdir, "-i", inputs, "-c", cfg, "--parts", "2", "--no-progress")
    assert [done_record(workdir, "fetch", i) for i in range(2)] == fetch_before
    split_after = [done_record(workdir, "split", i) for i in range(2)]
    for old, new in zip(split_before, split_after):
        assert new["fingerprint"] != old["fingerprint"] and new["finished"] > old["finished"]
    # A fetch setting changes fetch's fingerprint and, through the chain, split's.
    cfg2 = write_config(tmp_path / "c2.yaml", "split:\n  threshold: 5.0\nfetch:\n  max_archive_members: 10\n")
    curate("local", "-w", workdir, "-i", inputs, "-c", cfg2, "--parts", "2", "--no-progress")
    assert done_record(workdir, "fetch", 0)["fingerprint"] != fetch_before[0]["fingerprint"]
    assert done_record(workdir, "split", 0)["fingerprint"] != split_after[0]["fingerprint"]


def test_two_runs_of_one_index_at_once(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "1")
    curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")
    cmd = [sys.executable, "-m", "curate", "run", "-w", str(workdir), "--stage", "split", "--index", "0"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    workers = [i for i, (out, _) in enumerate(outs) if "done in" in out]
    assert len(workers) == 1, outs
    other = outs[1 - workers[0]][0]
    assert "leaving it alone" in other or "already done" in other
    assert done_record(workdir, "split", 0)["owner"]["pid"] == procs[workers[0]].pid
    part = pl.read_parquet(workdir / "stages" / "split" / "part-00000.parquet")
    assert part["clip_id"].drop_nulls().is_duplicated().sum() == 0


def _wait_for(path, timeout=60):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def test_kill_9_mid_task_then_rerun(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "1")
    curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")
    proc = subprocess.Popen([sys.executable, "-m", "curate", "run", "-w", str(workdir), "--stage", "split",
                             "--index", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(marker(workdir, "split", 0, "claim"))
    time.sleep(0.5)  # inside the decode of the first videos
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker(workdir, "split", 0, "claim").exists()
    assert not marker(workdir, "split", 0, "done").exists()
    assert not (workdir / "stages" / "split" / "part-00000.parquet").exists()
    status = json.loads(curate("status", "-w", workdir, "--json").stdout)
    assert "task died without a marker" in status["stages"]["split"]["failed"]["0"]

    rerun = curate("run", "-w", workdir, "--stage", "split", "--index", "0")
    assert "done in" in rerun.stdout
    curate("run", "-w", workdir, "--stage", "filter", "--index", "0")
    curate("run", "-w", workdir, "--stage", "score", "--index", "0")
    curate("run", "-w", workdir, "--stage", "dedup", "--index", "0")  # on by default: the last stage here
    curate("export", "-w", workdir)
    table = pl.read_parquet(workdir / "metadata" / "clips.parquet")
    assert table["clip_id"].drop_nulls().is_duplicated().sum() == 0
    assert sorted(table["relpath"].unique()) == sorted(p.name for p in inputs.iterdir())
    assert not list((workdir / "stages" / "split").glob(".*tmp"))


def _fake_claim(workdir, owner, age_s, stage="fetch"):
    path = marker(workdir, stage, 0, "claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"token": "x", "start": time.time() - age_s, **owner}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_live_claim_of_other_host_is_respected(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "1")
    _fake_claim(workdir, {"host": "node042", "pid": 1234, "job_id": None}, age_s=5)
    proc = curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")
    assert "leaving it alone" in proc.stdout and "node042" in proc.stdout
    assert not marker(workdir, "fetch", 0, "done").exists()


def test_stale_claims_are_broken(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "1")
    # heartbeat older than the TTL on another host
    _fake_claim(workdir, {"host": "node042", "pid": 1234, "job_id": None}, age_s=5)
    proc = curate("run", "-w", workdir, "--stage", "fetch", "--index", "0", env={"CURATE_CLAIM_TTL_S": "2"})
    assert "done in" in proc.stdout
    # dead process on this host, fresh heartbeat
    dead = subprocess.Popen(["true"])
    dead.wait()
    _fake_claim(workdir, {"host": socket.gethostname(), "pid": dead.pid, "job_id": None}, age_s=0, stage="split")
    assert "done in" in curate("run", "-w", workdir, "--stage", "split", "--index", "0").stdout
    assert not marker(workdir, "split", 0, "claim").exists()


def test_failure_writes_marker_and_blocks_downstream(inputs, workdir):
    curate("manifest", "-w", workdir, "-i", inputs, "--parts", "2")
    for i in range(2):
        curate("run", "-w", workdir, "--stage", "fetch", "--index", str(i))
    (workdir / "stages" / "fetch" / "part-00001.parquet").write_bytes(b"garbage, not parquet")
    proc = curate("run", "-w", workdir, "--stage", "split", "--index", "1", check=False)
    assert proc.returncode == 1 and "split[1] failed" in proc.stderr and "Traceback" not in proc.stderr
    failed = json.loads(marker(workdir, "split", 1, "failed").read_text())
    assert failed["error"] and "Traceback" in failed["traceback"] and len(failed["attempts"]) == 1
    assert not marker(workdir, "split", 1, "claim").exists()
    curate("run", "-w", workdir, "--stage", "split", "--index", "1", check=False)
    assert len(json.loads(marker(workdir, "split", 1, "failed").read_text())["attempts"]) == 2
    status = json.loads(curate("status", "-w", workdir, "--json").stdout)["stages"]
    assert status["fetch"]["done"] == [0, 1]
    assert list(status["split"]["failed"]) == ["1"] and status["split"]["not_started"] == [0]
    # the final table keeps index 1's videos as incomplete rows with the reason
    curate("run", "-w", workdir, "--stage", "split", "--index", "0")
    curate("run", "-w", workdir, "--stage", "filter", "--index", "0")
    curate("run", "-w", workdir, "--stage", "score", "--index", "0")
    dedup = curate("run", "-w", workdir, "--stage", "dedup", "--index", "0").stdout  # run-wide: index 1 left out
    assert "1 left out" in dedup
    doc = json.loads(curate("export", "-w", workdir, "--json").stdout)
    assert doc["incomplete_indices"] == 1
    table = pl.read_parquet(doc["table"])
    incomplete = table.filter(pl.col("status") == "incomplete")
    assert incomplete.height >= 1 and incomplete["reason"][0].startswith("index 1 stopped at split:")
    assert sorted(table["relpath"].unique()) == sorted(p.name for p in inputs.iterdir())
