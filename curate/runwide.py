"""A run-wide step: one task over every index at once, for a stage whose class sets `run_wide`
(dedup compares every clip of the run with every other).

It keeps the task contract of curate/task.py, with one claim for the whole run
(markers/<stage>/run.claim) and the usual per-index `.done` / `.failed` markers, so every later
stage, `status`, `rerun` and export read it like any other stage:

    1. the indices to do: those not done whose stage before is done; the rest are left out (failed or
       not run earlier) and said so; none to do -> return at once
    2. take the run claim (a live one by someone else -> return without work)
    3. read their upstream parts and the parts this stage already wrote (whose decisions stand),
       run the stage over all of them, write each index's part atomically
    4. write each index's .done, or on failure each index's .failed

Any index may be given on the command line (`curate run --stage dedup --index 0`); the task always
covers the whole run. Executors run it once the stage before has ended for every index (Slurm:
`afterany` on every chunk; local: once no index is still before it).
"""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import markers
from .errors import CurateError
from .rundir import RunDir, atomic_write_parquet


def is_run_wide(stage: str) -> bool:
    from stages import STAGES

    return bool(getattr(STAGES[stage].load(), "run_wide", False)) if stage in STAGES else False


def claim_path(run: RunDir, stage: str) -> Path:
    return run.marker_dir(stage) / "run.claim"


def split_indices(run: RunDir, plan, stage: str) -> tuple[list[int], list[int], list[int]]:
    """(to do, already done, left out) over every index of the plan."""
    from .task import is_done

    upstream = plan.upstream_of(stage)
    todo, settled, left_out = [], [], []
    for index in range(plan.num_parts):
        if is_done(run, stage, index, plan.fingerprints[stage]):
            settled.append(index)
        elif upstream is None or is_done(run, upstream, index, plan.fingerprints[upstream]):
            todo.append(index)
        else:
            left_out.append(index)
    return todo, settled, left_out


def run_wide_task(run: RunDir, stage: str, plan_path: Path | None = None,
                  job_alive: markers.JobAliveCheck | None = None, log: Callable[[str], None] = print):
    from .faults import HANDLED_SIGNALS, signals_raise, storage_errors
    from .plan import load_plan
    from .task import Outcome

    plan = load_plan(run, plan_path)
    plan.check_stage(stage)
    todo, _, left_out = split_indices(run, plan, stage)
    if not todo:
        log(f"{stage} is already done for every index whose stage before is done"
            + (f" ({len(left_out)} left out)" if left_out else ""))
        return Outcome.ALREADY_DONE
    with signals_raise():
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            path = claim_path(run, stage)
            with storage_errors(path):
                claim, holder = markers.try_claim(path, job_alive)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if claim is None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            log(f"{stage} (run-wide) is being run by {holder.get('job_id') or 'pid ' + str(holder.get('pid'))} "
                f"on {holder.get('host')}; leaving it alone")
            return Outcome.BUSY
        return _run_claimed(run, plan, stage, claim, mask, log)


def _run_claimed(run: RunDir, plan, stage: str, claim: markers.Claim, mask, log: Callable[[str], None]):
    import polars as pl

    from stages import STAGES
    from stages.base import TaskContext

    from .faults import raise_if_interrupted, stopped_by_signal
    from .task import Outcome, read_input, status_counts

    started = time.time()
    fingerprint = plan.fingerprints[stage]
    ctx = TaskContext(run=run, plan=plan, stage=stage, index=-1, log=log)
    todo: list[int] = []
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        claim.start_heartbeat()
        todo, settled, left_out = split_indices(run, plan, stage)  # again: someone may have finished meanwhile
        if not todo:
            return Outcome.ALREADY_DONE
        impl = STAGES[stage].load()(ctx)
        impl.preflight()
        raise_if_interrupted()  # a signal Python dropped in the imports stops the task before the work
        parts = {index: read_input(run, plan, stage, index) for index in todo}
        done_parts = {index: pl.read_parquet(run.stage_part(stage, index)) for index in settled}
        outputs = impl.run_all(parts, done_parts, left_out)
        raise_if_interrupted()  # ... and in any case before it commits
        if not claim.still_ours():
            raise CurateError(f"{stage}: our run claim was broken by another task while we worked; "
                              "its result wins and ours is discarded (is CURATE_CLAIM_TTL_S too short?)")
        finished = time.time()
        for index in todo:
            atomic_write_parquet(run.stage_part(stage, index), outputs[index])
        for index in todo:
            counts = status_counts(outputs[index])
            markers.write_done(run, stage, index, {
                "stage": stage, "index": index, "fingerprint": fingerprint, "owner": claim.owner, "run_wide": True,
                "started": started, "finished": finished, "seconds": round(finished - started, 3),
                "rows_in": parts[index].height, "rows_out": outputs[index].height, "status_counts": counts,
                **ctx.stats})
        log(f"{stage} (run-wide) done in {finished - started:.1f} s over {len(todo)} indices "
            f"({len(settled)} done before, {len(left_out)} left out): {ctx.stats.get('duplicates', 0)} duplicates "
            f"in {ctx.stats.get('groups', 0)} groups")
        return Outcome.DONE
    except BaseException as exc:
        stop = stopped_by_signal(exc)
        if stop is exc:
            raise  # no failure record: an interrupted task is rerun
        if stop is not None:
            raise stop from exc  # (curate.faults.stopped_by_signal)
        record = {"stage": stage, "fingerprint": fingerprint, "owner": claim.owner, "run_wide": True,
                  "finished": time.time(), "error": f"{type(exc).__name__}: {exc}".strip(),
                  "traceback": "".join(traceback.format_exception(exc)[-12:])}
        for index in todo:
            markers.write_failed(run, stage, index, {**record, "index": index})
        raise
    finally:
        try:
            claim.release()
        except OSError as exc:
            log(f"{stage}: could not release the claim {claim.path}: {exc}")
