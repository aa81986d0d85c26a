"""The local executor: pipelined per index, bounded, interruptible, resumable; status and export."""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
from conftest import SAMPLES, curate


def _inputs(tmp_path, copies=3):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(copies):
        for name in ("cuts_6shots.mp4", "bikes.mp4"):
            (d / f"{i}_{name}").write_bytes((SAMPLES / name).read_bytes())
    return d


def _markers(workdir, stage, kind):
    return [json.loads(p.read_text()) for p in sorted((workdir / "markers" / stage).glob(f"*.{kind}"))]


def test_pipelined_per_index_and_bounded(tmp_path, workdir):
    inputs = _inputs(tmp_path)
    proc = curate("local", "-w", workdir, "-i", inputs, "--parts", "6", "--workers", "2", "--no-progress", "--json")
    doc = json.loads(proc.stdout)
    assert doc["failed"] == {} and doc["videos"] == 6 and doc["clips_ok"] > 0
    tasks = [(d["started"], d["finished"], d["stage"], d["index"])
             for stage in ("fetch", "split") for d in _markers(workdir, stage, "done")]
    assert len(tasks) == 12
    # split of some index started before the fetch of another index had finished: pipelined
    last_fetch_end = max(end for _, end, stage, _ in tasks if stage == "fetch")
    assert min(start for start, _, stage, _ in tasks if stage == "split") < last_fetch_end
    # never more than 2 tasks at once
    events = sorted([(s, 1) for s, *_ in tasks] + [(e, -1) for _, e, *_ in tasks], key=lambda x: (x[0], x[1]))
    running, peak = 0, 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= 2
    # the tasks ran on two long-lived workers (imports and models once each), not a process apiece
    owners = {d["owner"]["pid"] for stage in ("fetch", "split", "filter") for d in _markers(workdir, stage, "done")}
    assert len(owners) == 2
    # per-attempt logs
    assert len(list((workdir / "logs" / "split").glob("local-*_*.out"))) == 6


def test_ctrl_c_then_rerun_finishes(tmp_path, workdir):
    inputs = _inputs(tmp_path, copies=4)
    proc = subprocess.Popen([sys.executable, "-m", "curate", "local", "-w", str(workdir), "-i", str(inputs),
                             "--parts", "8", "--workers", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((workdir / "markers" / "split").glob("*.claim")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again" in err and "Traceback" not in err
    assert not list((workdir / "markers").rglob("*.claim")), "interrupted tasks must release their claims"
    status = json.loads(curate("status", "-w", workdir, "--json").stdout)["stages"]
    assert len(status["split"]["done"]) < 8 and status["split"]["failed"] == {}

    doc = json.loads(curate("local", "-w", workdir, "--no-progress", "--json").stdout)  # resumes as set up
    assert doc["failed"] == {}
    table = pl.read_parquet(doc["table"])
    assert table["clip_id"].drop_nulls().is_duplicated().sum() == 0
    assert table["video_id"].n_unique() == 8 and "incomplete" not in table["status"].to_list()
    status = json.loads(curate("status", "-w", workdir, "--json").stdout)["stages"]
    assert status["split"]["done"] == list(range(8))


def test_status_table_and_jsonl_export(tmp_path, workdir):
    inputs = _inputs(tmp_path, copies=1)
    curate("local", "-w", workdir, "-i", inputs, "--parts", "2", "--no-progress", "--format", "jsonl")
    rows = [json.loads(line) for line in (workdir / "metadata" / "clips.jsonl").read_text().splitlines()]
    assert {r["status"] for r in rows} <= {"ok", "dropped", "filtered", "duplicate"}
    assert len({r["video_id"] for r in rows}) == 2
    # cuts_6shots.mp4 holds a shot of bikes.mp4: dedup (on by default) finds it across the two parts
    part_of = {r["clip_id"]: r["part"] for r in rows}
    duplicates = [r for r in rows if r["status"] == "duplicate"]
    assert any(part_of[r["duplicate_of"]] != r["part"] for r in duplicates)
    assert all(r["flash_ratio"] is not None for r in rows if r["status"] == "ok")
    text = curate("status", "-w", workdir).stdout
    assert "fetch" in text and "split" in text and "done" in text
    proc = curate("status", "-w", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "not a curate run directory" in proc.stderr


def test_status_and_run_start_fast(tmp_path, workdir):
    """Guard the lazy imports: `status` must not import polars, torch, cv2 or scenedetect."""
    inputs = _inputs(tmp_path, copies=1)
    curate("manifest", "-w", workdir, "-i", inputs)
    code = (f"import sys, runpy; sys.argv=['curate','status','-w',{str(workdir)!r},'--json']\n"
            "try:\n runpy.run_module('curate', run_name='__main__')\nexcept SystemExit: pass\n"
            "heavy=[m for m in ('polars','torch','cv2','scenedetect','av','numpy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ).stdout
    assert "HEAVY []" in out


def test_the_executor_ends_with_its_last_task_without_a_nap(tmp_path, workdir, monkeypatch):
    """The scheduler only waits for a held-back index; once the last task (here the run-wide dedup)
    has ended and nothing waits, `curate local` goes on to the final table at once."""
    import types

    from curate.executors import local as local_executor
    from curate.plan import load_plan
    from curate.prepare import prepare_run
    from curate.rundir import RunDir

    naps = []
    clock = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    clock.sleep = lambda seconds: naps.append(seconds) or time.sleep(seconds)
    monkeypatch.setattr(local_executor, "time", clock)
    d = tmp_path / "in"
    d.mkdir()
    (d / "bikes.mp4").write_bytes((SAMPLES / "bikes.mp4").read_bytes())
    config = tmp_path / "c.yaml"
    config.write_text("filter: {ocr: {enabled: false}, nsfw: {enabled: false}}\n")
    run, plan, _ = prepare_run(workdir, config, d, False, parts=1)
    result = local_executor.LocalExecutor(run, load_plan(RunDir.at(workdir)), 1).execute()
    assert result.failed == {}
    assert "dedup" in plan.stages and (workdir / "markers" / "dedup" / "00000.done").exists()
    assert naps == []


def test_a_worker_started_ahead_of_the_plan_runs_the_tasks(tmp_path, workdir):
    """`curate local` starts its first worker before it writes the manifest (the worker imports the
    stages' libraries meanwhile); the pool adopts it: it runs the preflight and every task, and gets
    the task's thread budget with each request."""
    from curate.executors import local as local_executor
    from curate.executors.local_workers import close_early, start_early
    from curate.plan import load_plan
    from curate.prepare import prepare_run
    from curate.rundir import RunDir

    early = start_early(workdir, 1)
    started = list(early)  # the pool takes them out of `early` as it adopts them
    try:
        d = tmp_path / "in"
        d.mkdir()
        (d / "bikes.mp4").write_bytes((SAMPLES / "bikes.mp4").read_bytes())
        config = tmp_path / "c.yaml"
        config.write_text("filter: {ocr: {enabled: false}, nsfw: {enabled: false}}\n")
        prepare_run(workdir, config, d, False, parts=1)
        run = RunDir.at(workdir)
        result = local_executor.LocalExecutor(run, load_plan(run), 1, early=early).execute()
    finally:
        close_early(early)
    assert result.failed == {} and early == []
    pids = {json.loads(p.read_text())["owner"]["pid"] for p in (workdir / "markers").glob("*/*.done")}
    assert pids == {started[0].pid}
    assert not started[0].first_log.exists()
