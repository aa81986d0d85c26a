"""One task as `curate run` runs it, and a long-lived process that runs such tasks one after another.

`curate local` hands its tasks to a few worker processes instead of starting `curate run` for each: the
imports (~0.7 s) and the models (stages/models.py caches them per process: ~1-2 s for OCR and NSFW) are
then paid once per worker, not once per stage and part. Each task still gets its own log pair (its
output is redirected onto fds 1 and 2, so native libraries' messages land there too), its own exit code
and its own claim; a task that crashes the interpreter takes only its worker with it, and the executor
records that task as failed and starts another worker.

Protocol (executors/local_workers.py): one JSON request per line on stdin, one exit code per line on
the stdout the worker was started with. End of stdin ends the worker. It starts as `python -m
curate.worker`, not through the command line app: typer and the command modules cost each worker
0.2-0.3 s before its first task.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import CurateError, ExitCode
from .rundir import RunDir


def run_one(run: RunDir, stage: str, index: int, plan_path: Path | None,
            log: Callable[[str], None]) -> int:
    """One task through the task contract; its messages on stderr as `curate run` prints them; its exit
    code. TaskInterrupted (a signal) propagates: the caller stops."""
    from .faults import storage_errors
    from .secrets import scrub
    from .slurm_cli import job_alive
    from .task import run_task

    try:
        with storage_errors():
            run_task(run, stage, index, plan_path, job_alive=job_alive, log=log)
        return ExitCode.OK
    except CurateError as exc:  # RequeueLimitReached among them, with its own exit code
        print(f"error: {scrub(str(exc))}", file=sys.stderr, flush=True)
        return exc.exit_code
    except Exception as exc:
        print(scrub(f"{stage}[{index}] failed: {type(exc).__name__}: {exc} "
                    f"(traceback in markers/{stage}/{index:05d}.failed)"), file=sys.stderr, flush=True)
        return ExitCode.STAGE_FAILED


def stop_on_signal(stage: str | None, index: int | None, exc) -> None:
    """A signal stopped the task (its claim is released): say so and exit at once, skipping interpreter
    teardown, which decoder threads still running in native code would abort."""
    print(f"{stage}[{index}] stopped by {exc}; claim released, nothing written", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(ExitCode.signalled(exc.signum))


def preflight_one(run: RunDir, stages: list[str], plan_path: Path | None) -> int:
    """`curate preflight` in this process, so the models it loads stay for the tasks that follow."""
    from .plan import load_plan
    from .secrets import scrub
    from .task import preflight_stages

    try:
        preflight_stages(run, load_plan(run, plan_path), stages, log=lambda m: print(m, file=sys.stderr))
        return ExitCode.OK
    except CurateError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr, flush=True)
        return exc.exit_code


def _redirect(out_path: str, err_path: str) -> None:
    """Point fds 1 and 2 (and so Python's and native libraries' output) at this task's logs."""
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, path in ((1, out_path), (2, err_path)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(opened, fd)
        os.close(opened)


def serve(run: RunDir, plan_path: Path | None) -> None:
    """Read requests from stdin until it closes; answer each with its exit code on the original stdout."""
    from .faults import TaskInterrupted
    from .secrets import scrub

    replies = os.dup(1)  # fd 1 itself becomes each task's log
    for line in sys.stdin:
        request = json.loads(line)
        os.environ.update(request.get("env", {}))  # a worker started before its pool knew them (`warm`)
        _redirect(request["out"], request["err"])
        stage, index = request.get("stage"), request.get("index")
        try:
            if "preflight" in request:
                code = preflight_one(run, request["preflight"], plan_path)
            else:
                code = run_one(run, stage, index, plan_path, log=lambda m: print(scrub(m), flush=True))
        except TaskInterrupted as exc:
            stop_on_signal(stage, index, exc)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(replies, f"{int(code)}\n".encode())


def warm() -> None:
    """Import what the tasks will need before the first request comes: the task contract, every stage's
    libraries (`Stage.warm_modules`) and, after each stage's own, its `warm_worker`. `curate local`
    starts a worker so while it still builds the manifest and the plan (about 0.4 s of imports each
    side, on cores of their own)."""
    import importlib

    from stages import STAGES

    from . import task  # noqa: F401 - the contract every request runs through

    for spec in STAGES.values():  # each stage's `warm_worker` right after its modules, before later stages'
        stage = spec.load()  # (a later import may start a thread: OpenVINO's telemetry does)
        for module in stage.warm_modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the stage's preflight says what is missing, and what to do
                pass
        try:
            stage.warm_worker()
        except Exception:  # noqa: BLE001 - a head start only: the tasks work without it
            pass


def main(argv: list[str] | None = None) -> None:
    """`python -m curate.worker --workdir W [--plan P] [--warm]`, as the local executor starts it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m curate.worker",
                                     description="Run curate tasks read from stdin one after another.")
    parser.add_argument("--workdir", required=True, type=Path, help="the run directory")
    parser.add_argument("--plan", type=Path, help="plan file to read (default: WORKDIR/run.yaml)")
    parser.add_argument("--warm", action="store_true", help="import the stages' libraries before the first request")
    args = parser.parse_args(argv)
    try:
        if args.warm:
            warm()
        serve(RunDir.at(args.workdir), args.plan)
    except CurateError as exc:  # each task reports its own; this is one outside any task
        from .secrets import scrub

        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
