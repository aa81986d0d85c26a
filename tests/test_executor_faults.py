"""Systemic faults around the executors end in a clear message and exit 2, never a traceback or a loop:
a plan rewritten under a running `curate local`, SIGTERM, a full or read-only run directory, an array
spec far past the manifest, and missing weights (found before any work or submission)."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import SAMPLES, curate, ffmpeg, write_config

from curate.arrayspec import parse_spec
from curate.errors import CurateError, ExitCode

NO_ANALYZERS = "filter: {ocr: {enabled: false}, nsfw: {enabled: false}}\n"


@pytest.fixture
def videos(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for n in range(2):
        ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10,hue=h={n * 90}", "-t", "1", "-pix_fmt", "yuv420p",
               str(d / f"v{n}.mp4"))
    return d


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of 4 MB (root only): a disk that really fills up or turns read-only."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _start_local(workdir, *args):
    return subprocess.Popen([sys.executable, "-m", "curate", "local", "-w", str(workdir), *map(str, args),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pattern, root, proc, timeout=120):
    deadline = time.time() + timeout
    while not list(root.glob(pattern)):
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.01)
    return list(root.glob(pattern))


def _children(pid: int) -> list[int]:
    """The processes `pid` started (its task workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it ended meanwhile


def test_a_rewritten_plan_stops_local_instead_of_looping(tmp_path, videos, workdir):
    from curate.config import validate_config
    from curate.plan import write_plan
    from curate.rundir import read_json

    cfg = write_config(tmp_path / "c.yaml", NO_ANALYZERS)
    proc = _start_local(workdir, "-i", videos, "-c", cfg, "--parts", "2", "--workers", "1")
    _wait_for("markers/fetch/*.done", workdir, proc)
    # The rest of this small run takes well under a second: its worker is held still until `curate local`
    # has seen the rewrite, so that the rewrite always lands while work is left.
    workers = _children(proc.pid)
    assert workers
    for pid in workers:
        _signal(pid, signal.SIGSTOP)
    try:
        # what another `curate local -c other.yaml` does to run.yaml: split's settings (and fingerprint) change
        doc = yaml.safe_load((workdir / "run.yaml").read_text())
        doc["config"]["split"]["min_s"] = 0.2
        info = read_json(workdir / "manifests" / "_manifest.json")
        write_plan(workdir / "run.yaml", validate_config(doc["config"]), info)
        time.sleep(0.5)  # it checks run.yaml at least every 50 ms
    finally:
        for pid in workers:
            _signal(pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)  # before: relaunched "split[i] is already done" forever
    assert proc.returncode == ExitCode.USAGE, err
    assert "rewritten with a different plan" in err and "Traceback" not in err
    assert not list(workdir.rglob("*.claim"))
    assert len(list((workdir / "logs").rglob("*.err"))) < 10


def test_sigterm_stops_the_tasks_of_local(tmp_path, videos, workdir):
    cfg = write_config(tmp_path / "c.yaml", NO_ANALYZERS)
    proc = _start_local(workdir, "-i", videos, "-c", cfg, "--parts", "2", "--workers", "2")
    claim = _wait_for("markers/*/*.claim", workdir, proc)[0]
    pid = None
    while pid is None:  # the claim's owner is written just after the claim file is created
        pid = (json.loads(claim.read_text() or "{}") if claim.exists() else {}).get("pid", pid or 0) or None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.signalled(signal.SIGTERM), err
    assert "run the same command again" in err and "Traceback" not in err
    assert not list(workdir.rglob("*.claim")), "stopped tasks release their claims"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # no task left running on its own


def test_an_array_far_past_the_manifest_is_refused_without_expanding_it(tmp_path, videos, workdir):
    started = time.monotonic()
    with pytest.raises(CurateError, match="index 300000000 is outside this run's manifest"):
        parse_spec("0-300000000", 4)
    assert time.monotonic() - started < 0.1
    assert parse_spec("0-3:2,1%5", 4) == ([0, 1, 2], 5)
    curate("manifest", "-w", workdir, "-i", videos, "--parts", "2")
    proc = curate("submit", "-w", workdir, "--array", "0-300000000", "--dry-run", check=False)
    assert proc.returncode == ExitCode.USAGE and "outside this run's manifest (0-1" in proc.stderr, proc.stderr
    proc = curate("rerun", "-w", workdir, "--indices", "0-300000000", "--dry-run", check=False)
    assert proc.returncode == ExitCode.USAGE and "outside this run's manifest" in proc.stderr, proc.stderr


def test_a_full_disk_during_export_is_a_clear_error(small_fs, videos):
    workdir = small_fs / "run"
    curate("manifest", "-w", workdir, "-i", videos)
    filler = small_fs / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # until the disk is full
    proc = curate("export", "-w", workdir, check=False)
    assert proc.returncode == ExitCode.USAGE and "Traceback" not in proc.stderr, proc.stderr
    assert "No space left on device" in proc.stderr and "clips.parquet" in proc.stderr
    filler.unlink()
    curate("export", "-w", workdir)  # with space again it works: nothing before export was lost


def test_a_read_only_run_directory_is_a_clear_error(small_fs, videos):
    workdir = small_fs / "run"
    curate("manifest", "-w", workdir, "-i", videos)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    for args, names in ((("local", "--no-progress"), "run.yaml"), (("export",), "metadata"),
                        (("run", "--stage", "fetch", "--index", "0"), "00000.claim")):
        proc = curate(*args, "-w", workdir, check=False)
        assert proc.returncode == ExitCode.USAGE and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "Read-only file system" in proc.stderr and names in proc.stderr, (args, proc.stderr)


def test_run_names_the_failed_marker_it_could_not_write(tmp_path, videos, workdir, monkeypatch, capsys):
    from curate import markers
    from curate.cli import main

    curate("manifest", "-w", workdir, "-i", videos)
    (workdir / "manifests" / "part-00000.parquet").write_text("not parquet")  # the task fails on its input

    def read_only(run, stage, index, record):
        raise OSError(errno.EROFS, "Read-only file system", str(run.marker(stage, index, "failed")))

    monkeypatch.setattr(markers, "write_failed", read_only)
    monkeypatch.setattr(sys, "argv", ["curate", "run", "-w", str(workdir), "--stage", "fetch", "--index", "0"])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == ExitCode.USAGE, err
    assert "fetch[0] failed" in err and "markers/fetch/00000.failed could not be written" in err
    assert "Read-only file system" in err and "Traceback" not in err
    assert not (workdir / "markers" / "fetch" / "00000.claim").exists()


def test_missing_weights_stop_local_before_any_work(tmp_path, videos, workdir):
    cfg = write_config(tmp_path / "c.yaml", NO_ANALYZERS + "score:\n  laion_aes:\n    enabled: true\n"
                                                           f"    head: {{path: {tmp_path}/nope.pth}}\n")
    proc = curate("local", "-w", workdir, "-i", videos, "-c", cfg, "--no-progress", check=False)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert f"weights file {tmp_path}/nope.pth does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (workdir / "markers").exists(), "no stage ran"


def test_submit_checks_weights_but_not_devices_on_the_login_node(tmp_path, videos, workdir):
    """A GPU model on a machine without GPUs: its weights are looked for, its device is not required."""
    model = tmp_path / "clf"
    model.mkdir()
    (model / "config.json").write_text("{}")
    env = {"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    base = NO_ANALYZERS + "slurm: {max_array_size: 100}\nscore:\n  classifiers: [{model: %s, label: w, device: cuda}]\n"
    missing = write_config(tmp_path / "missing.yaml", base % "nobody/no-such-model")
    proc = curate("submit", "-w", workdir, "-i", videos, "-c", missing, "--dry-run", check=False, env=env)
    assert proc.returncode == ExitCode.USAGE and "Traceback" not in proc.stderr, proc.stderr
    assert "no-such-model" in proc.stderr and "#SBATCH" not in proc.stdout
    present = write_config(tmp_path / "present.yaml", base % model)
    proc = curate("submit", "-w", workdir, "-c", present, "--dry-run", check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --gres=gpu:1" in proc.stdout


def test_a_worker_killed_mid_task_fails_only_that_index(tmp_path, workdir):
    """The OOM killer (SIGKILL) takes a worker in the middle of split[0]: that index is reported failed
    with the reason, a fresh worker runs the other index, and a rerun takes over the dead claim."""
    d = tmp_path / "in"
    d.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=640x360:rate=25", "-t", "30", "-pix_fmt", "yuv420p", str(d / "long.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(d / "short.mp4"))
    cfg = write_config(tmp_path / "c.yaml", NO_ANALYZERS)
    proc = _start_local(workdir, "-i", d, "-c", cfg, "--parts", "2", "--workers", "1")
    _wait_for("manifests/_manifest.json", workdir, proc)
    index = next(n for n in range(2) if "long.mp4" in str(
        pl.read_parquet(workdir / "manifests" / f"part-{n:05d}.parquet").to_dicts()))
    claim = _wait_for(f"markers/split/{index:05d}.claim", workdir, proc)[0]  # the 30 s video's: still running
    pid = None
    while pid is None:
        pid = (json.loads(claim.read_text() or "{}") if claim.exists() else {}).get("pid") or None
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.STAGE_FAILED, err
    assert "split" in err and "Traceback" not in err
    done = {int(p.name.split(".")[0]) for p in (workdir / "markers" / "split").glob("*.done")}
    assert done == {1 - index}, "the other index ran on a fresh worker"
    proc = curate("local", "-w", workdir, "-c", cfg, "--no-progress", "--json")
    assert json.loads(proc.stdout)["failed"] == {}
    assert {int(p.name.split(".")[0]) for p in (workdir / "markers" / "split").glob("*.done")} == {0, 1}


def test_a_worker_starts_without_the_command_line_app(tmp_path):
    """A local worker is `python -m curate.worker`: it answers a request without importing typer or the
    command modules (0.2-0.3 s a worker before its first task), and ends when its stdin does."""
    code = ("import json, runpy, sys; report = sys.argv[2]; sys.argv = ['curate.worker', '--workdir', sys.argv[1]]; "
            "runpy.run_module('curate.worker', run_name='__main__'); "
            "cli = [m for m in sys.modules if m in ('typer', 'curate.cli') or m.startswith('curate.cli.')]; "
            "open(report, 'w').write(json.dumps(sorted(cli)))")
    request = json.dumps({"preflight": ["split"], "out": str(tmp_path / "o"), "err": str(tmp_path / "e")})
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), str(tmp_path / "modules.json")],
                          input=request + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and int(proc.stdout.strip()) != 0  # the request's exit code: there is no plan
    assert "run.yaml" in (tmp_path / "e").read_text()  # ... and the reason in the request's log
    assert json.loads((tmp_path / "modules.json").read_text()) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped exception itself
def test_a_signal_that_python_drops_still_stops_the_task():
    """A signal whose exception Python prints and ignores (it arrived inside a __del__, or an import's lock
    callback, as a Slurm time-limit signal once did) must still stop the task before it commits."""
    from curate.faults import TaskInterrupted, raise_if_interrupted, signals_raise

    class SignalledWhileCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(1000):  # the handler runs here, and its exception goes nowhere
                pass

    with signals_raise():
        raise_if_interrupted()  # nothing arrived yet
        SignalledWhileCollected()  # collected at once; the task would run on from here
        with pytest.raises(TaskInterrupted, match="SIGUSR1"):
            raise_if_interrupted()
    raise_if_interrupted()  # the next task starts with nothing pending


def test_task_interrupted_crosses_a_process_boundary():
    import pickle

    from curate.faults import TaskInterrupted

    again = pickle.loads(pickle.dumps(TaskInterrupted(signal.SIGUSR1)))
    assert isinstance(again, TaskInterrupted) and again.signum == signal.SIGUSR1 and str(again) == "SIGUSR1"


@pytest.mark.parametrize("restarts", [0, 1])
def test_a_stop_that_a_library_turns_into_its_own_error_is_still_a_stop(tmp_path, monkeypatch, restarts):
    """The time-limit signal's exception can pass through library code that raises an error of its own
    instead (an import that fails, a video marked failed). That is still the stop: requeued without a
    failure record while requeues are left, failed as past the limit on the last attempt - never a plain
    failure that the sbatch script would requeue once more (seen once in ~30 runs of the requeue cluster
    test)."""
    from curate.faults import TaskInterrupted
    from curate.rundir import RunDir
    from curate.task import RequeueLimitReached, run_task
    from stages.split import SplitStage

    (tmp_path / "in").mkdir()
    os.link(SAMPLES / "cuts_6shots.mp4", tmp_path / "in" / "a.mp4")
    workdir = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", "slurm:\n  max_requeues: 1\n")
    curate("manifest", "-w", workdir, "-i", tmp_path / "in", "-c", cfg)
    curate("run", "-w", workdir, "--stage", "fetch", "--index", "0")

    def preflight_of_a_library_that_converts(self):
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(1)  # the handler raises in here
        except BaseException as exc:
            raise CurateError(f"the library failed: {exc!r}") from None

    monkeypatch.setattr(SplitStage, "preflight", preflight_of_a_library_that_converts)
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(restarts))
    run = RunDir(workdir)
    failed = workdir / "markers" / "split" / "00000.failed"
    if restarts == 0:
        with pytest.raises(TaskInterrupted, match="SIGUSR1"):
            run_task(run, "split", 0, log=lambda line: None)
        assert not failed.exists()
    else:
        with pytest.raises(RequeueLimitReached, match="after 1 requeues"):
            run_task(run, "split", 0, log=lambda line: None)
        assert "slurm.max_requeues=1" in json.loads(failed.read_text())["error"]
    assert not (workdir / "markers" / "split" / "00000.claim").exists()
    assert not (workdir / "markers" / "split" / "00000.done").exists()
