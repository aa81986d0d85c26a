"""stages/forked.py: the processes a local worker forks at its start, in a process of their own (as a
worker: the test process itself runs threads that a fork must not copy)."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a parent that does not reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_gone(pids: list[int], seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


def run_script(code: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


def test_items_run_in_a_forked_process_with_the_callers_budget_and_logs(tmp_path):
    log = tmp_path / "task.out"
    code = f"""
        import os, sys
        from stages import forked
        assert forked.available() == 0
        forked.prefork(1)
        assert forked.available() == 1
        child, parent = forked.call(os.getpid), forked.call(os.getppid)
        assert child != os.getpid() and parent == os.getpid(), (child, parent)
        assert forked.call(os.getpid) == child  # the same process, item after item
        os.environ["CURATE_THREADS"] = "3"  # a request's budget, set after the fork
        assert forked.call(os.getenv, "CURATE_THREADS") == "3"
        fd = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)  # the task's log, as the worker points fd 1 at it
        forked.call(print, "from the child")
        try:
            forked.call(int, "not a number")
        except ValueError as exc:
            print("raised", exc, file=sys.stderr)
        assert forked.available() == 1
        print(child, file=sys.stderr)
    """
    proc = run_script(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "from the child\n"  # in the caller's log, not the fd the child started with
    assert "raised invalid literal for int() with base 10: 'not a number'" in proc.stderr
    assert wait_gone([int(proc.stderr.split()[-1])])  # gone with the process that forked it


def test_a_child_that_dies_is_reported_and_its_caller_falls_back(tmp_path):
    code = """
        import os
        from stages import forked
        forked.prefork(1)
        try:
            forked.call(os._exit, 7)
        except forked.ProcessDied as exc:
            print(exc)
        assert forked.available() == 0
        try:
            forked.call(os.getpid)
        except forked.ProcessDied as exc:
            print(exc)
    """
    proc = run_script(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    died, none_left = proc.stdout.splitlines()
    assert died.startswith("the process it ran in died (exit code 7)")
    assert none_left == "no forked process left"


@pytest.mark.parametrize("start", ["prefork", "server"])
def test_a_killed_caller_leaves_no_forked_process(tmp_path, start):
    """A worker (or a `curate run` task with a fork server) killed outright (SIGKILL: no handler, no
    teardown) takes its processes with it: a fork server's children hold the server's lifeline open
    themselves, so they must watch the caller, not the server."""
    code = f"""
        import multiprocessing, os, time
        from stages import forked
        if {start!r} == "prefork":
            forked.prefork(2)
            assert forked.call(os.getppid) == os.getpid()
            print(*[child.pid for child in multiprocessing.active_children()], flush=True)
        else:
            forked.start_server(1, ["stages.split"])
            server = forked.call(os.getppid)
            assert server != os.getpid()
            assert forked.call(os.getenv, "CURATE_THREADS") == "5"
            print(forked.call(os.getpid), server, flush=True)
        time.sleep(60)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CURATE_THREADS": "5"})
    try:
        children = [int(pid) for pid in proc.stdout.readline().split()]
        assert len(children) == 2 and all(alive(pid) for pid in children)
        proc.kill()
        proc.wait(timeout=10)
        assert wait_gone(children)
    finally:
        proc.kill()


def test_where_no_process_can_start_the_callers_use_threads(tmp_path):
    code = """
        from stages import forked
        def no_prctl_here(caller, forked_by_caller):
            raise OSError("prctl is not available")
        forked._child_start = no_prctl_here
        forked.prefork(1)
        print(forked.available())
    """
    proc = run_script(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "0"


def test_a_worker_forks_after_split_s_imports_and_before_the_models(tmp_path):
    """The real warm-up forks right after split's libraries (before OpenVINO's import starts its telemetry
    thread); the children ignore the stop signals that reach the whole process group, and keep neither
    a file opened without O_APPEND nor an exception that would not unpickle from reaching the caller."""
    log = tmp_path / "plain.log"
    code = f"""
        import os, signal, sys
        from curate.worker import warm
        from stages import forked

        def has(name):
            return name in sys.modules

        class TwoArguments(Exception):
            def __init__(self, a, b):
                super().__init__(a)

        def raises():
            raise TwoArguments("cannot come back as it is", 2)

        warm()
        assert forked.available() == 1, forked.available()
        assert forked.call(has, "scenedetect") and not forked.call(has, "openvino")
        assert has("openvino")
        child = forked.call(os.getpid)
        os.kill(child, signal.SIGTERM)  # as a killpg of the worker's group would
        assert forked.call(os.getpid) == child
        try:
            forked.call(raises)
        except RuntimeError as exc:
            assert "TwoArguments: cannot come back as it is" in str(exc), exc
        assert forked.available() == 1
        fd = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)  # not for appending: a child's writes would be overwritten by the caller's
        forked.call(print, "to the child's own output")
        os.write(1, b"the caller's line\\n")
    """
    proc = run_script(code, tmp_path, env={"CURATE_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "the caller's line\n"
    assert "to the child's own output" in proc.stderr
