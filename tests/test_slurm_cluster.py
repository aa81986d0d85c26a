"""The Slurm path against a real single-node cluster (scripts/slurm-local-cluster.sh).

scripts/test.sh starts the cluster and exports SLURM_CONF; without one these tests are skipped,
unless CURATE_REQUIRE_SLURM=1 (as in CI), where a missing cluster is a failure.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import polars as pl
import pytest
from conftest import SAMPLES, curate, ffmpeg, write_config
from polars.testing import assert_frame_equal

from curate.arrayspec import compact

# One cluster for every test here: they run one after another on one xdist worker (loadgroup).
pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    problem = None
    if not os.environ.get("SLURM_CONF") or shutil.which("sbatch") is None:
        problem = "no Slurm cluster (SLURM_CONF unset or sbatch missing)"
    else:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if proc.returncode != 0:
            problem = f"sinfo failed: {proc.stderr.strip()}"
    if problem:
        if os.environ.get("CURATE_REQUIRE_SLURM") == "1":
            pytest.fail(problem)
        pytest.skip(problem + "; scripts/test.sh starts one")


def submitted_jobs(root):
    """Every job id that a submission under `root` recorded (curate writes each one as it submits)."""
    ids = set()
    for doc in root.rglob("submission.json"):
        for chunks in json.loads(doc.read_text())["stages"].values():
            ids |= {c["job_id"] for c in chunks if c.get("job_id")}
    return sorted(ids)


@pytest.fixture(autouse=True)
def cancel_our_jobs(tmp_path):
    """Each test ends with none of the jobs it submitted left in the queue; nobody else's is touched."""
    yield
    ids = submitted_jobs(tmp_path)
    if not ids:
        return
    subprocess.run(["scancel", *ids], check=False, capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i"], capture_output=True, text=True)
        if not out.stdout.strip():
            break
        time.sleep(0.5)


def slurm_config(tmp_path, extra=""):
    return write_config(tmp_path / "slurm.yaml", "slurm:\n  profile: local-test\n" + extra)


def status(workdir):
    return json.loads(curate("status", "-w", workdir, "--json").stdout)


def wait_until_settled(workdir, timeout=300):
    """Until no index of any stage is running or pending; returns the last status."""
    deadline = time.time() + timeout
    while True:
        doc = status(workdir)
        active = [(s, st["running"], st["pending"]) for s, st in doc["stages"].items()
                  if st["running"] or st["pending"]]
        if not active:
            return doc
        assert time.time() < deadline, f"still active after {timeout} s: {active}"
        time.sleep(1)


def wait_for(path, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def squeue_ids(name):
    out = subprocess.run(["squeue", "-h", "-r", "-n", name, "-o", "%i|%T"], capture_output=True, text=True).stdout
    return dict(line.split("|") for line in out.split())


def wait_for_merge(workdir, timeout=120):
    """Until the final-table job of the latest submission has ended; returns its status entry."""
    deadline = time.time() + timeout
    while True:
        merge = status(workdir).get("merge") or {}
        if merge.get("state") in ("done", "failed"):
            return merge
        assert time.time() < deadline, f"the merge job did not end: {merge}"
        time.sleep(1)


def start_now(job, timeout=60):
    """Slurm holds a requeued job back for a while (AuthInfo cred_expire, 120 s); let it start now (again,
    until it runs or has left the queue: an update that races the requeue itself is lost, and a requeue
    passes through states other than PENDING on its way back).

    Not within the second of the requeue: slurmd revokes the old attempt's credential at that second,
    and a job started again in it is killed as "non-startable: Job credential revoked" (seen on a loaded
    CI run: the task's attempt 2 never ran)."""
    deadline = time.time() + timeout
    pending_since = None
    while (state := subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                   text=True).stdout.strip()) not in ("RUNNING", ""):
        assert time.time() < deadline, f"{job} never started again (still {state})"
        if state == "PENDING":
            pending_since = pending_since or time.time()
            if time.time() - pending_since >= 1.5:
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False,
                               capture_output=True)
        time.sleep(0.5)


def task_logs(workdir, stage):
    """What a stage's tasks printed, for an assertion's message (CI shows nothing else of a task)."""
    return "; ".join(f"{p.name}: {p.read_text()[-2000:]!r}" for p in sorted((workdir / "logs" / stage).glob("*.*")))


def table(workdir):
    curate("export", "-w", workdir)
    return pl.read_parquet(workdir / "metadata" / "clips.parquet")


@pytest.fixture
def eight_videos(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("cuts_6shots.mp4", "bikes.mp4", "carphone_pristine.mp4", "flash_3.mp4"):
        for copy in ("a", "b"):
            (d / f"{copy}_{name}").write_bytes((SAMPLES / name).read_bytes())
    return d


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """~4 s of split work: ten copies of cuts_6shots back to back."""
    d = tmp_path_factory.mktemp("long")
    listing = d / "list.txt"
    listing.write_text(f"file '{SAMPLES / 'cuts_6shots.mp4'}'\n" * 10)
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(d / "long.mp4"))
    return d / "long.mp4"


def test_all_stages_match_the_local_executor(tmp_path, eight_videos):
    cfg = slurm_config(tmp_path, "  max_array_size: 3\n")  # 8 indices -> 3 chained chunks per stage
    workdir = tmp_path / "slurm-run"
    sub = json.loads(curate("submit", "-c", cfg, "-w", workdir, "-i", eight_videos, "--parts", "8",
                            "--stage", "all", "--json").stdout)
    for stage in ("fetch", "split"):
        assert [(c["offset"], compact(c["task_ids"])) for c in sub["stages"][stage]] == [
            (0, "0-2"), (3, "0-2"), (6, "0-1")]
    folder = workdir / "submissions" / sub["id"]
    for n, fetch_chunk in enumerate(sub["stages"]["fetch"]):
        script = (folder / f"split-{n:03d}.sbatch").read_text()
        assert f"#SBATCH --dependency=aftercorr:{fetch_chunk['job_id']}\n" in script
    doc = wait_until_settled(workdir)
    for stage in ("fetch", "split", "filter", "score"):
        assert doc["stages"][stage]["done"] == list(range(8)), doc

    local = tmp_path / "local-run"
    curate("local", "-w", local, "-i", eight_videos, "--parts", "8", "-c", cfg, "--no-progress")  # same config
    on_slurm = table(workdir).sort("video_id", "clip_id", nulls_last=True)
    on_local = pl.read_parquet(local / "metadata" / "clips.parquet").sort("video_id", "clip_id", nulls_last=True)
    assert on_slurm.height > 8
    assert_frame_equal(on_slurm, on_local)
    # logs land per stage as <array job>_<task>.out
    assert len(list((workdir / "logs" / "split").glob("*_*.out"))) == 8


def test_failed_index_blocks_only_its_successor_then_rerun(tmp_path, eight_videos):
    cfg = slurm_config(tmp_path)
    workdir = tmp_path / "run"
    curate("manifest", "-w", workdir, "-i", eight_videos, "--parts", "4")
    part = workdir / "manifests" / "part-00002.parquet"
    good = part.read_bytes()
    part.write_bytes(b"not parquet")  # index 2's fetch fails for real
    curate("submit", "-c", cfg, "-w", workdir)
    doc = wait_until_settled(workdir)
    fetch, split = doc["stages"]["fetch"], doc["stages"]["split"]
    assert fetch["done"] == [0, 1, 3] and list(fetch["failed"]) == ["2"]
    assert fetch["failed"]["2"].startswith("FAILED") and "fetch[2] failed" in fetch["failed"]["2"]
    assert split["done"] == [0, 1, 3] and split["blocked"] == [2] and split["failed"] == {}
    assert doc["stages"]["filter"]["blocked"] == doc["stages"]["score"]["blocked"] == [2]
    text = curate("status", "-w", workdir).stdout
    assert "fetch[2] FAILED" in text and "blocked by a failed earlier stage: 2" in text

    # the merge job ran after the last stage although index 2 failed: its videos are incomplete rows
    merged = wait_for_merge(workdir)
    assert merged["state"] == "done" and merged["table"], merged
    final = pl.read_parquet(workdir / "metadata" / "clips.parquet")
    assert final.filter(pl.col("status") == "incomplete")["part"].unique().to_list() == [2]
    assert "final table (job " in curate("status", "-w", workdir).stdout

    part.write_bytes(good)
    rerun = json.loads(curate("rerun", "-w", workdir, "--failed", "--json").stdout)
    assert rerun["merge_job_id"] and rerun["merge_job_id"] != merged["job_id"]
    assert rerun["indices"] == "2" and list(rerun["stages"]) == ["fetch", "split", "filter", "score"]
    doc = wait_until_settled(workdir)
    assert doc["stages"]["score"]["done"] == [0, 1, 2, 3]
    assert wait_for_merge(workdir)["state"] == "done"
    merged = pl.read_parquet(workdir / "metadata" / "clips.parquet")
    assert "incomplete" not in merged["status"].to_list()
    result = table(workdir)
    assert "incomplete" not in result["status"].to_list()
    assert result["clip_id"].drop_nulls().is_duplicated().sum() == 0
    assert result["video_id"].n_unique() == 8
    nothing = curate("rerun", "-w", workdir, "--failed")
    assert "nothing failed" in nothing.stderr


def test_scancel_and_kill_then_rerun(tmp_path, long_video):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("x.mp4", "y.mp4"):
        os.link(long_video, inputs / name)
    workdir = tmp_path / "run"
    curate("submit", "-c", slurm_config(tmp_path), "-w", workdir, "-i", inputs, "--parts", "2")
    for index in (0, 1):
        wait_for(workdir / "markers" / "split" / f"{index:05d}.claim")
    time.sleep(0.5)
    # The claim names this test's job (another test's job of the same name may still be queued).
    job0 = json.loads((workdir / "markers" / "split" / "00000.claim").read_text())["job_id"]
    assert job0 in squeue_ids("curate-split")
    subprocess.run(["scancel", job0], check=True)  # SIGTERM: the task releases its claim
    # As the kernel's OOM killer would: SIGKILL to the task itself, no chance to clean up.
    owner = json.loads((workdir / "markers" / "split" / "00001.claim").read_text())
    os.kill(owner["pid"], signal.SIGKILL)
    deadline = time.time() + 60
    while squeue_ids("curate-split"):
        assert time.time() < deadline
        time.sleep(0.5)
    deadline = time.time() + 30  # slurmdbd records a cancellation a moment after squeue drops the job
    while sorted((doc := status(workdir)["stages"]["split"])["failed"]) != ["0", "1"] and time.time() < deadline:
        time.sleep(0.5)
    assert doc["done"] == [] and sorted(doc["failed"]) == ["0", "1"], json.dumps(doc)
    assert doc["failed"]["0"].startswith("CANCELLED")
    # its claim is left, its job is gone
    assert doc["failed"]["1"].startswith("FAILED") and "task died without a marker" in doc["failed"]["1"]
    assert (workdir / "markers" / "split" / "00001.claim").exists()

    curate("rerun", "-w", workdir, "--failed")
    doc = wait_until_settled(workdir)
    assert doc["stages"]["split"]["done"] == [0, 1]
    result = table(workdir)
    assert result["clip_id"].drop_nulls().is_duplicated().sum() == 0
    per_video = result.filter(pl.col("status") == "ok").group_by("relpath").len()["len"].to_list()
    assert len(per_video) == 2 and per_video[0] == per_video[1] >= 50  # same clips from both copies
    # each attempt left its own log
    assert len(list((workdir / "logs" / "split").glob("*.out"))) == 4


def test_preemption_signal_requeues_cleanly(tmp_path, long_video):
    inputs = tmp_path / "in"
    inputs.mkdir()
    os.link(long_video, inputs / "long.mp4")
    workdir = tmp_path / "run"
    curate("submit", "-c", slurm_config(tmp_path), "-w", workdir, "-i", inputs, "--stage", "fetch")
    wait_until_settled(workdir)
    curate("submit", "-c", slurm_config(tmp_path), "-w", workdir, "--stage", "split")
    wait_for(workdir / "markers" / "split" / "00000.claim")
    time.sleep(0.5)
    job = json.loads((workdir / "markers" / "split" / "00000.claim").read_text())["job_id"]
    assert job in squeue_ids("curate-split")
    # What Slurm sends before the time limit (--signal=B:USR1@N) or on preemption.
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    deadline = time.time() + 60
    while squeue_ids("curate-split").get(job) != "PENDING":
        assert time.time() < deadline, "the task was not requeued"
        time.sleep(0.2)
    assert not (workdir / "markers" / "split" / "00000.claim").exists()
    assert status(workdir)["stages"]["split"]["pending"] == [0]
    # Slurm holds a requeued job back for a while; let it start now.
    start_now(job)
    doc = wait_until_settled(workdir)
    assert doc["stages"]["split"]["done"] == [0]
    log = (workdir / "logs" / "split" / f"{job}.out").read_text()
    assert "attempt 1" in log and "time limit or preemption: stopping" in log and "requeueing" in log
    assert "attempt 2" in log
    assert not (workdir / "markers" / "split" / "00000.failed").exists()


def test_array_beyond_max_array_size_is_split_chained_and_completes(tmp_path):
    limit = int(subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
                .split("MaxArraySize")[1].split("=")[1].split()[0])
    count = 2 * limit + 5
    assert limit <= 20, "the test cluster must have a small MaxArraySize (scripts/test.sh sets 10)"
    tiny = tmp_path / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1.2", "-pix_fmt", "yuv420p", str(tiny))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(count):
        os.link(tiny, inputs / f"v{i:04d}.mp4")
    workdir = tmp_path / "run"
    cfg = slurm_config(tmp_path)
    sub = json.loads(curate("submit", "-c", cfg, "-w", workdir, "-i", inputs, "--parts", str(count),
                            "--stage", "fetch,split", "--array", f"0-{count - 1}", "--json").stdout)
    folder = workdir / "submissions" / sub["id"]
    for stage in ("fetch", "split"):
        chunks = sub["stages"][stage]
        assert [c["offset"] for c in chunks] == [0, limit, 2 * limit]  # every task id below MaxArraySize
        assert [c["task_ids"] for c in chunks] == [list(range(limit)), list(range(limit)), list(range(5))]
        assert len({c["job_id"] for c in chunks}) == 3
    for n, fetch_chunk in enumerate(sub["stages"]["fetch"]):
        script = (folder / f"split-{n:03d}.sbatch").read_text()
        assert f"#SBATCH --dependency=aftercorr:{fetch_chunk['job_id']}\n" in script
        assert f"CURATE_INDEX=$((SLURM_ARRAY_TASK_ID + {n * limit}))" in script
    doc = wait_until_settled(workdir, timeout=600)
    for stage in ("fetch", "split"):
        assert doc["stages"][stage]["done"] == list(range(count)), doc["stages"][stage]
    # the index offset reached the task: index 2*limit+4 split the video of its own manifest part
    last = pl.read_parquet(workdir / "stages" / "split" / f"part-{count - 1:05d}.parquet")
    manifest = pl.read_parquet(workdir / "manifests" / f"part-{count - 1:05d}.parquet")
    assert set(last["relpath"]) == set(manifest["relpath"])


def test_requeued_task_takes_over_the_claim_of_its_own_dead_attempt(tmp_path, long_video):
    """A node failure leaves the claim of attempt 1 behind, holding the job id that Slurm gives
    the requeued attempt 2 too: attempt 2 must do the work, and the next stage must complete."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    os.link(long_video, inputs / "long.mp4")
    workdir = tmp_path / "run"
    cfg = slurm_config(tmp_path)
    curate("submit", "-c", cfg, "-w", workdir, "-i", inputs, "--stage", "fetch")
    wait_until_settled(workdir)
    curate("submit", "-c", cfg, "-w", workdir, "--stage", "split,filter,score")
    claim = workdir / "markers" / "split" / "00000.claim"
    wait_for(claim)
    time.sleep(0.5)
    # Other tests' jobs of the same name may still be queued: the claim names this test's one.
    job = json.loads(claim.read_text())["job_id"]
    assert job in squeue_ids("curate-split")
    subprocess.run(["scontrol", "requeue", job], check=True)
    deadline = time.time() + 60
    while squeue_ids("curate-split").get(job) != "PENDING":
        assert time.time() < deadline, "the task was not requeued"
        time.sleep(0.2)
    # What the dead node left: attempt 1's claim, from another host, heartbeat fresh.
    claim.write_text(json.dumps({"job_id": job, "host": "node-that-died", "pid": 4242, "attempt": 1,
                                 "start": time.time(), "token": "attempt-1"}))
    start_now(job)
    doc = wait_until_settled(workdir)
    assert (doc["stages"]["split"]["done"] == doc["stages"]["filter"]["done"] == doc["stages"]["score"]["done"]
            == [0]), doc
    log = (workdir / "logs" / "split" / f"{job}.out").read_text()
    assert "attempt 2" in log and "took over a stale claim: left by an earlier attempt of this job" in log
    assert table(workdir).filter(pl.col("status") == "ok").height >= 50


def test_requeue_is_capped_by_max_requeues(tmp_path, long_video):
    inputs = tmp_path / "in"
    inputs.mkdir()
    os.link(long_video, inputs / "long.mp4")
    workdir = tmp_path / "run"
    cfg = slurm_config(tmp_path, "  max_requeues: 1\n")
    curate("submit", "-c", cfg, "-w", workdir, "-i", inputs, "--stage", "fetch")
    wait_until_settled(workdir)
    curate("submit", "-c", cfg, "-w", workdir, "--stage", "split")
    claim = workdir / "markers" / "split" / "00000.claim"
    for attempt in (1, 2):
        deadline = time.time() + 60
        while not claim.exists() or json.loads(claim.read_text() or "{}").get("attempt") != attempt:
            assert time.time() < deadline, f"attempt {attempt} never claimed the task; {task_logs(workdir, 'split')}"
            time.sleep(0.05)
        time.sleep(0.5)
        job = json.loads(claim.read_text())["job_id"]  # this run's task (another test's job may linger)
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)  # as at the time limit
        if attempt == 1:
            deadline = time.time() + 60
            while squeue_ids("curate-split").get(job) != "PENDING":
                assert time.time() < deadline, "the first stop was not requeued"
                time.sleep(0.2)
            start_now(job)
    doc = wait_until_settled(workdir)
    failed = doc["stages"]["split"]["failed"]
    # from sacct and the task's log, or (while accounting lags) from the .failed marker
    assert list(failed) == ["0"] and "slurm.max_requeues=1" in failed["0"], doc
    marker = json.loads((workdir / "markers" / "split" / "00000.failed").read_text())
    assert "after 1 requeues" in marker["error"] and "slurm.stages.split.time" in marker["error"]
    log = (workdir / "logs" / "split" / f"{job}.out").read_text()
    assert "attempt 2" in log and "not requeued: slurm.max_requeues reached" in log and "attempt 3" not in log
    assert not claim.exists()


def test_workdir_with_a_space_and_resubmitting_done_work(tmp_path, eight_videos):
    workdir = tmp_path / "run dir"  # quoted in every #SBATCH line and in the task command
    cfg = slurm_config(tmp_path)
    curate("submit", "-c", cfg, "-w", workdir, "-i", eight_videos, "--parts", "4")
    doc = wait_until_settled(workdir)
    assert doc["stages"]["score"]["done"] == [0, 1, 2, 3], doc
    assert len(list((workdir / "logs" / "score").glob("*_*.out"))) == 4
    again = curate("submit", "-c", cfg, "-w", workdir, "--json")
    sub = json.loads(again.stdout)
    assert sub["already_done"] == 4 and sub["stages"] == {}
    text = curate("submit", "-c", cfg, "-w", workdir).stderr
    assert "left out 4 indices already done" in text and "nothing submitted" in text
    # Only index 2's filter is undone: only it (and the score after it) goes to sbatch, no fetch or split job.
    (workdir / "markers" / "filter" / "00002.done").unlink()
    sub = json.loads(curate("submit", "-c", cfg, "-w", workdir, "--json").stdout)
    assert sub["already_done"] == 3 and sub["indices"] == "2" and list(sub["stages"]) == ["filter", "score"]
    doc = wait_until_settled(workdir)
    assert doc["stages"]["filter"]["done"] == doc["stages"]["score"]["done"] == [0, 1, 2, 3]


def test_dedup_is_one_job_after_every_index_and_rerun_adds_the_failed_one(tmp_path, eight_videos):
    """Dedup on Slurm: one job after every score chunk (afterany), the failed index left out and said
    so; once it is rerun, a new dedup job adds it and what the others decided stands."""
    cfg = write_config(tmp_path / "slurm.yaml", "slurm:\n  profile: local-test\n  max_array_size: 2\n"
                                                "filter: {enabled: false}\ndedup: {enabled: true}\n")
    workdir = tmp_path / "run"
    curate("manifest", "-w", workdir, "-i", eight_videos, "-c", cfg, "--parts", "4")
    part = workdir / "manifests" / "part-00002.parquet"
    good = part.read_bytes()
    part.write_bytes(b"not parquet")  # index 2's fetch fails for real
    sub = json.loads(curate("submit", "-c", cfg, "-w", workdir, "--json").stdout)
    (dedup,) = sub["stages"]["dedup"]
    assert dedup["run_wide"] and dedup["job_id"]
    script = (workdir / "submissions" / sub["id"] / "dedup-000.sbatch").read_text()
    score_jobs = ":".join(c["job_id"] for c in sub["stages"]["score"])
    assert f"#SBATCH --dependency=afterany:{score_jobs}\n" in script and "--array" not in script
    doc = wait_until_settled(workdir)
    assert doc["stages"]["dedup"]["done"] == [0, 1, 3] and doc["stages"]["dedup"]["blocked"] == [2]
    marker = json.loads((workdir / "markers" / "dedup" / "00000.done").read_text())
    assert marker["left_out"] == [2] and marker["run_wide"]
    before = pl.read_parquet(workdir / "stages" / "dedup" / "part-00000.parquet")
    assert wait_for_merge(workdir)["state"] == "done"

    part.write_bytes(good)
    rerun = json.loads(curate("rerun", "-w", workdir, "--failed", "--json").stdout)
    assert list(rerun["stages"]) == ["fetch", "split", "score", "dedup"] and rerun["indices"] == "2"
    doc = wait_until_settled(workdir)
    assert doc["stages"]["dedup"]["done"] == [0, 1, 2, 3]
    assert pl.read_parquet(workdir / "stages" / "dedup" / "part-00000.parquet").equals(before)
    assert wait_for_merge(workdir)["state"] == "done"
    final = pl.read_parquet(workdir / "metadata" / "clips.parquet")
    # every video is there twice (a_ and b_): byte copies are exact duplicates (cuts_6shots and flash_3
    # also hold shots of bikes: near ones)
    dups = final.filter(pl.col("status") == "duplicate")
    assert "exact" in set(dups["dup_kind"])
    kept = set(final.filter(pl.col("status") == "ok")["clip_id"])
    assert set(dups["duplicate_of"]) <= kept
