"""The task contract: the only thing a compute node ever runs.

    1. done with the same stage fingerprint -> return at once
    2. take the claim (a live claim by someone else -> return without work)
    3. read the upstream part, run the stage, write the part atomically
    4. write .done (timing, counts) or .failed (error, traceback tail)

A signal stops the task without a marker (it is requeued or rerun), except a time-limit or
preemption signal on an attempt that has used up `slurm.max_requeues`: that writes .failed.
"""

from __future__ import annotations

import enum
import os
import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import markers
from .errors import CurateError, DeviceUnavailable, ExitCode, UpstreamNotDone
from .faults import (
    HANDLED_SIGNALS,
    STOP_SIGNAL,
    FailureNotRecorded,
    raise_if_interrupted,
    signals_raise,
    stopped_by_signal,
    storage_error,
    storage_errors,
)
from .plan import Plan, load_plan
from .rundir import RunDir, atomic_write_parquet


class Outcome(str, enum.Enum):
    DONE = "done"
    ALREADY_DONE = "already-done"
    BUSY = "claimed-by-other"


class RequeueLimitReached(CurateError):
    """Stopped at the time limit (or preempted) once more than slurm.max_requeues allows."""

    exit_code = ExitCode.REQUEUE_LIMIT  # the sbatch script does not requeue on this code (curate.executors.slurm)


def is_done(run: RunDir, stage: str, index: int, fingerprint: str) -> bool:
    return markers.read_done(run, stage, index, fingerprint) is not None


def requeue_limit_error(plan: Plan, stage: str, index: int) -> RequeueLimitReached | None:
    """The error to fail with when this attempt may not be requeued again, else None."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    limit = plan.config.slurm.max_requeues
    if restarts < limit:
        return None
    return RequeueLimitReached(
        f"{stage}[{index}] hit its time limit (or was preempted) on attempt {restarts + 1}, after {restarts} "
        f"requeues (slurm.max_requeues={limit}); give the stage more time (slurm.stages.{stage}.time) or "
        f"make parts smaller (--parts), then `curate rerun --failed`")


def read_input(run: RunDir, plan: Plan, stage: str, index: int):
    import polars as pl

    from .manifest import read_manifest_part

    upstream = plan.upstream_of(stage)
    if upstream is None:
        return read_manifest_part(run, index)
    if not is_done(run, upstream, index, plan.fingerprints[upstream]):
        raise UpstreamNotDone(f"stage {upstream} is not done for index {index} with the current config; "
                              f"run it first (`curate run --stage {upstream} --index {index}`)")
    return pl.read_parquet(run.stage_part(upstream, index))


def status_counts(frame) -> dict[str, int]:
    if "status" not in frame.columns:
        return {}
    return {row["status"]: row["len"] for row in frame.group_by("status").len().to_dicts()}


def preflight_stages(run: RunDir, plan: Plan, stages: list[str], here: bool = True,
                     log: Callable[[str], None] = print) -> None:
    """Every given stage's preflight (tools, packages, weights, keys), as its task would run it, before any
    work: a missing weights file stops the run at once, not after the stages before it ran for hours.

    `here` False: on the submitting machine, which need not have the compute nodes' GPUs. A stage whose
    preflight stops only because a device is absent is then checked without loading: each enabled model's
    weights must be found where its task will look for them."""
    from stages import STAGES
    from stages.base import TaskContext

    for stage in stages:
        cls = STAGES[stage].load()
        ctx = TaskContext(run=run, plan=plan, stage=stage, index=0, log=log)
        try:
            cls(ctx).preflight()
        except CurateError as exc:
            if here or not isinstance(exc, DeviceUnavailable):
                raise CurateError(f"{stage}: {exc} (found before any work started)") from None
            for entry in (e for e in cls.models(ctx.section) if e.enabled):
                try:
                    found, where = entry.locate()
                except Exception as why:  # e.g. a model name that is neither a folder nor a valid repo id
                    found, where = False, f"{type(why).__name__}: {why}"
                if not found:
                    raise CurateError(f"{stage}: {entry.name} needs {entry.weights}: {where}; put it where the "
                                      "compute nodes read it (`curate models` lists every model) (found before "
                                      "anything was submitted)") from None


def run_task(run: RunDir, stage: str, index: int, plan_path: Path | None = None,
             job_alive: markers.JobAliveCheck | None = None,
             log: Callable[[str], None] = print) -> Outcome:
    plan = load_plan(run, plan_path)
    plan.check_stage(stage)
    plan.check_index(index)
    from .runwide import is_run_wide, run_wide_task

    if is_run_wide(stage):  # one task over every index (curate/runwide.py); `index` only names it
        return run_wide_task(run, stage, plan_path, job_alive, log)
    fingerprint = plan.fingerprints[stage]
    if is_done(run, stage, index, fingerprint):
        log(f"{stage}[{index}] is already done")
        return Outcome.ALREADY_DONE

    with signals_raise():
        # Signals stay blocked while the claim is taken, and arrive only inside the try below,
        # so a Ctrl-C or scancel at any moment can never leave a claim without its release.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            claim_path = run.marker(stage, index, "claim")
            with storage_errors(claim_path):
                claim, holder = markers.try_claim(claim_path, job_alive)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if claim is None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            log(f"{stage}[{index}] is being run by {holder.get('job_id') or 'pid ' + str(holder.get('pid'))} "
                f"on {holder.get('host')}; leaving it alone")
            return Outcome.BUSY
        for why in claim.broken:
            log(f"{stage}[{index}] took over a stale claim: {why}")
        return _run_claimed(run, plan, stage, index, fingerprint, claim, mask, log)


def _run_claimed(run: RunDir, plan: Plan, stage: str, index: int, fingerprint: str, claim: markers.Claim,
                 mask, log: Callable[[str], None]) -> Outcome:
    """Steps 3 and 4 of the contract, for a claim we hold; signals are still blocked on entry."""
    from stages import STAGES
    from stages.base import TaskContext

    started = time.time()
    ctx = TaskContext(run=run, plan=plan, stage=stage, index=index, log=log)
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending signal is raised here, inside the try
        claim.start_heartbeat()
        # Someone may have finished it between our done check and our claim.
        if is_done(run, stage, index, fingerprint):
            return Outcome.ALREADY_DONE
        impl = STAGES[stage].load()(ctx)
        impl.preflight()
        raise_if_interrupted()  # a signal Python dropped in the imports stops the task before the work
        rows_in = read_input(run, plan, stage, index)
        rows_out = impl.run(rows_in)
        raise_if_interrupted()  # ... and in any case before it commits
        if not claim.still_ours():
            raise CurateError(f"{stage}[{index}]: our claim was broken by another task while we worked; "
                              "its result wins and ours is discarded (is CURATE_CLAIM_TTL_S too short?)")
        atomic_write_parquet(run.stage_part(stage, index), rows_out)
        finished = time.time()
        counts = status_counts(rows_out)
        markers.write_done(run, stage, index, {
            "stage": stage, "index": index, "fingerprint": fingerprint, "owner": claim.owner,
            "started": started, "finished": finished, "seconds": round(finished - started, 3),
            "rows_in": rows_in.height, "rows_out": rows_out.height, "status_counts": counts, **ctx.stats,
        })
        log(f"{stage}[{index}] done in {finished - started:.1f} s: {rows_in.height} rows in, "
            f"{rows_out.height} out {counts}")
        return Outcome.DONE
    except BaseException as exc:
        stop = stopped_by_signal(exc)
        if stop is not None:
            limit = requeue_limit_error(plan, stage, index) if stop.signum == STOP_SIGNAL else None
            if limit is None:  # no failure record: an interrupted task is requeued or rerun
                if stop is exc:
                    raise
                raise stop from exc
            markers.write_failed(run, stage, index, {
                "stage": stage, "index": index, "fingerprint": fingerprint, "owner": claim.owner,
                "finished": time.time(), "error": str(limit), "traceback": ""})
            raise limit from None
        if isinstance(exc, UpstreamNotDone):
            raise  # no failure record: an early task simply waits for its input
        record = {"stage": stage, "index": index, "fingerprint": fingerprint, "owner": claim.owner,
                  "finished": time.time(), "error": f"{type(exc).__name__}: {exc}".strip(),
                  "traceback": "".join(traceback.format_exception(exc)[-12:])}
        try:
            markers.write_failed(run, stage, index, record)
        except Exception as unwritten:
            # Without this, the task's message would point at a .failed marker that does not exist.
            failed = run.marker(stage, index, "failed")
            why = storage_error(unwritten, failed) or unwritten
            raise FailureNotRecorded(f"{stage}[{index}] failed: {record['error']}; and its failure record {failed} "
                                     f"could not be written: {why}") from exc
        raise
    finally:
        try:
            claim.release()
        except OSError as exc:  # e.g. a read-only disk: the claim stays, and goes stale once our pid is gone
            log(f"{stage}[{index}]: could not release the claim {claim.path}: {exc}")
