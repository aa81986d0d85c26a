"""`curate status` from one listing per stage: name markers, the same answers as the task contract, details
read only where needed; the local executor's queue for --watch; rates from the mean task; the 80-column
table; --workdir from --config or CURATE_WORKDIR."""

import json
import os
import subprocess
import sys
import time

import polars as pl
import pytest
from conftest import SAMPLES, curate, write_config

from curate import markers, rundir
from curate.plan import load_plan
from curate.prepare import prepare_run
from curate.rundir import atomic_write_json, atomic_write_parquet
from curate.status import StageStatus, collect_status


def _names(workdir, stage, index):
    return sorted(p.name for p in (workdir / "markers" / stage).glob(f"{index:05d}.ok.*"))


def test_done_name_marker_follows_the_record(tmp_path, workdir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "bikes.mp4").write_bytes((SAMPLES / "bikes.mp4").read_bytes())
    curate("manifest", "-w", workdir, "-i", inputs)
    curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")
    record = json.loads((workdir / "markers" / "fetch" / "00000.done").read_text())
    [name] = _names(workdir, "fetch", 0)
    assert name == (f"00000.ok.{record['fingerprint']}.{round(record['finished'] * 1000)}."
                    f"{round(record['seconds'] * 1000)}")
    # A config change makes the task run again: the one name marker follows the new record.
    cfg = write_config(tmp_path / "c.yaml", "fetch:\n  max_archive_members: 10\n")
    curate("manifest", "-w", workdir, "-i", inputs, "-c", cfg)
    curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")
    again = json.loads((workdir / "markers" / "fetch" / "00000.done").read_text())
    assert again["fingerprint"] != record["fingerprint"]
    assert _names(workdir, "fetch", 0) == [f"00000.ok.{again['fingerprint']}.{round(again['finished'] * 1000)}."
                                           f"{round(again['seconds'] * 1000)}"]
    doc = json.loads(curate("status", "-w", workdir, "--json").stdout)
    assert doc["stages"]["fetch"]["done"] == [0] and doc["stages"]["split"]["not_started"] == [0]


@pytest.fixture
def synthetic_run(tmp_path):
    """A run of 9 indices over empty stand-in files: status never opens the inputs."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(9):
        (inputs / f"v{n}.mp4").write_bytes(b"x" * (n + 1))
    run, plan, _ = prepare_run(tmp_path / "run", None, inputs, False, parts=9)
    return run, plan


def _done(run, plan, stage, index, fingerprint=None, seconds=3.6):
    atomic_write_parquet(run.stage_part(stage, index), pl.DataFrame({"status": ["ok"]}))
    now = time.time()
    markers.write_done(run, stage, index, {"stage": stage, "index": index,
                                           "fingerprint": fingerprint or plan.fingerprints[stage],
                                           "started": now - seconds, "finished": now, "seconds": seconds})


def test_status_from_listings_agrees_with_the_task_contract(synthetic_run, monkeypatch):
    run, plan = synthetic_run
    _done(run, plan, "fetch", 0)
    _done(run, plan, "fetch", 1, fingerprint="0123456789abcdef")  # done under an older config
    atomic_write_parquet(run.stage_part("fetch", 2), pl.DataFrame({"status": ["ok"]}))
    atomic_write_json(run.marker("fetch", 2, "done"), {"fingerprint": plan.fingerprints["fetch"], "finished": 1.0,
                                                      "seconds": 2.0})  # a record from before name markers
    _done(run, plan, "fetch", 3)
    run.marker("fetch", 3, "done").unlink()  # a record removed by hand: the index is to be redone
    _done(run, plan, "fetch", 4)
    run.stage_part("fetch", 4).unlink()  # its part is gone
    markers.write_failed(run, "fetch", 5, {"fingerprint": plan.fingerprints["fetch"], "finished": time.time(),
                                           "error": "ValueError: bad shard"})
    claim, _ = markers.try_claim(run.marker("fetch", 6, "claim"))
    markers.write_failed(run, "fetch", 8, {"fingerprint": "0123456789abcdef", "error": "old"})  # another config's
    opened = []
    real_read_json = rundir.read_json

    def counting(path):
        opened.append(path.name)
        return real_read_json(path)

    monkeypatch.setattr(markers, "read_json", counting)
    monkeypatch.setattr("curate.status.read_json", counting)
    try:
        stages = collect_status(run, plan)
        seen = sorted(opened)
    finally:
        claim.release()
    fetch = stages["fetch"]
    assert fetch.done == [0, 2] and fetch.running == [6] and fetch.failed == {5: "ValueError: bad shard"}
    assert fetch.not_started == [1, 3, 4, 7, 8]
    for index in range(9):  # the same answer as the contract's own reading, index by index
        assert (index in fetch.done) == (markers.read_done(run, "fetch", index, plan.fingerprints["fetch"])
                                         is not None), index
    assert stages["split"].blocked == [5] and stages["split"].not_started == [0, 1, 2, 3, 4, 6, 7, 8]
    # Files opened: the record without a name marker, the claim, the two .failed records; no .done with a name.
    assert seen == ["00002.done", "00005.failed", "00006.claim", "00008.failed"]
    assert fetch.task_seconds == [3.6, 2.0]


def test_rates_are_the_mean_task_times_the_workers():
    status = StageStatus(done=list(range(10)), task_seconds=[3.6] * 10)
    one = status.rates(total=100, workers=1)
    assert one["mean_task_s"] == 3.6 and one["tasks_per_hour"] == 1000.0 and one["eta_s"] == 324
    four = status.rates(total=100, workers=4)
    assert four["tasks_per_hour"] == 4000.0 and four["eta_s"] == 81 and four["workers"] == 4


def test_status_table_fits_80_columns():
    from rich.console import Console

    from curate.cli.views import status_table

    big = list(range(99999))
    stage = {"done": big, "running": big, "pending": big, "failed": {}, "blocked": big, "not_started": big,
             "total": 99999, "mean_task_s": 3.6, "tasks_per_hour": 99999.0, "eta_s": 3 * 86400 + 4 * 3600,
             "workers": 1}
    doc = {"workdir": "/scratch/runs/a-rather-long-run-directory-name", "num_parts": 99999,
           "stages": {name: stage for name in ("fetch", "split", "filter", "score", "caption", "upload")}}
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(status_table(doc))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80
    for header in ("stage", "done", "running", "pending", "failed", "blocked", "not", "started", "per h", "ETA"):
        assert header in text
    assert "…" not in text and "3d04h" in text and "caption" in text and "99999" in text
    wide = Console(width=200, record=True, file=open(os.devnull, "w"))
    wide.print(status_table(doc, wide=True))
    wide_text = wide.export_text()
    assert "task s" in wide_text and "3d04h00m00s" in wide_text


def test_workdir_from_config_or_environment(synthetic_run, tmp_path):
    run, _ = synthetic_run
    cfg = write_config(tmp_path / "w.yaml", f"workdir: {run.root}\n")
    for args, env in ((("status", "--json", "-c", cfg), None),
                      (("status", "--json"), {"CURATE_WORKDIR": str(run.root)})):
        doc = json.loads(curate(*args, env=env).stdout)
        assert doc["workdir"] == str(run.root) and doc["stages"]["fetch"]["not_started"] == list(range(9))
    assert "nothing failed" in curate("rerun", "-c", cfg, "--failed").stderr
    proc = curate("calibrate", "-c", cfg, check=False)
    assert proc.returncode == 2 and "no stage has finished" in proc.stderr
    proc = curate("export", "-c", cfg, "--json")
    assert json.loads(proc.stdout)["incomplete_indices"] == 9
    proc = curate("status", check=False, env={"CURATE_WORKDIR": ""})
    assert proc.returncode == 2 and "no run directory" in proc.stderr and "CURATE_WORKDIR" in proc.stderr
    nowhere = write_config(tmp_path / "n.yaml", "split:\n  min_s: 1\n")
    proc = curate("status", "-c", nowhere, check=False, env={"CURATE_WORKDIR": ""})
    assert proc.returncode == 2 and "has no `workdir:`" in proc.stderr


def test_watch_waits_for_what_local_still_has_queued(tmp_path, workdir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(4):
        (inputs / f"{n}_bikes.mp4").write_bytes((SAMPLES / "bikes.mp4").read_bytes())
    local = subprocess.Popen([sys.executable, "-m", "curate", "local", "-w", str(workdir), "-i", str(inputs),
                              "--parts", "4", "--workers", "1", "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list((workdir / "markers" / "fetch").glob("*.claim")):  # the executor is past its preflight
            assert time.time() < deadline and local.poll() is None, local.stderr.read() if local.poll() else ""
            time.sleep(0.05)
        doc = json.loads(curate("status", "-w", workdir, "--json").stdout)
        last = doc["stages"][list(doc["stages"])[-1]]
        assert last["pending"] and not last["not_started"], last  # queued locally, not "not started"
        assert doc["stages"]["fetch"]["workers"] == 1
        watched = curate("status", "-w", workdir, "--watch", "--interval", "0.5", "--json", timeout=600)
        final = json.loads(watched.stdout)  # the live table went to stderr
        assert all(s["done"] == [0, 1, 2, 3] for s in final["stages"].values()), final
        local.communicate(timeout=300)  # it still writes the final table
        assert local.returncode == 0
    finally:
        if local.poll() is None:
            local.kill()
            local.communicate(timeout=60)
    assert not list((workdir / "local").glob("queue-*.json")), "the executor removes its queue file"


def test_units_layout_runs_like_parts(tmp_path, monkeypatch):
    """Above ONE_FILE_ABOVE_PARTS the manifest is one units.parquet; every reader goes through read_manifest_part."""
    from curate import manifest

    monkeypatch.setattr(manifest, "ONE_FILE_ABOVE_PARTS", 2)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("cuts_6shots.mp4", "bikes.mp4", "carphone_pristine.mp4", "flash_3.mp4"):
        (inputs / name).write_bytes((SAMPLES / name).read_bytes())
    run, plan, info = prepare_run(tmp_path / "run", None, inputs, False, parts=4)
    assert info["layout"] == "units" and sorted(p.name for p in run.manifests.iterdir()) == [
        "_manifest.json", "units.parquet"]
    expected = manifest.plan_parts(load_plan(run).config.input)
    for index, units in enumerate(expected):
        assert manifest.read_manifest_part(run, index)["relpath"].to_list() == [u.relpath for u in units]
    doc = json.loads(curate("local", "-w", run.root, "--no-progress", "--json").stdout)
    assert doc["failed"] == {} and doc["videos"] == 4
    table = pl.read_parquet(doc["table"])
    assert sorted(table["relpath"].unique().to_list()) == sorted(u.relpath for p in expected for u in p)
