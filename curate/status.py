"""Where every (stage, index) of a run stands, from the markers alone or merged with a scheduler.

A scheduler view (the Slurm one reads squeue/sacct) plugs in through `SchedulerView`: it can
say a task is pending or running, that a job died without writing a marker, and whether a claim's
job still exists. Without one, markers and claims (with their heartbeat) are the whole truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .markers import DoneName, StageMarkers, read_claim
from .plan import Plan
from .rundir import RunDir, read_json

STATES = ("done", "running", "pending", "failed", "blocked", "not_started")


class SchedulerView(Protocol):
    note: str | None  # said once in the output, e.g. "accounting is off: squeue only"

    def task_state(self, stage: str, index: int) -> tuple[str, str | None] | None:
        """('pending'|'running'|'failed', reason) for a task the scheduler knows, else None."""

    def job_alive(self, job_id: str) -> bool | None: ...


@dataclass
class StageStatus:
    done: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    blocked: list[int] = field(default_factory=list)
    not_started: list[int] = field(default_factory=list)
    task_seconds: list[float] = field(default_factory=list)  # of the done tasks, from their name markers

    def to_json(self, total: int, workers: int = 1) -> dict:
        doc = {
            "done": self.done, "running": self.running, "pending": self.pending,
            "failed": {str(k): v for k, v in sorted(self.failed.items())},
            "blocked": self.blocked, "not_started": self.not_started, "total": total,
        }
        doc.update(self.rates(total, workers))
        return doc

    def rates(self, total: int, workers: int = 1) -> dict:
        """Throughput and ETA from the finished tasks' own durations and the workers available.

        tasks_per_hour = workers x 3600 / mean task seconds, so the figure matches the mean task (the
        spread of finish times says nothing when many tasks finished at once, or long ago). eta_s is the
        tasks still to run (neither done, failed nor blocked) at that rate."""
        workers = max(1, workers)
        if not self.task_seconds:
            return {"mean_task_s": None, "tasks_per_hour": None, "eta_s": None, "workers": workers}
        mean = sum(self.task_seconds) / len(self.task_seconds)
        remaining = total - len(self.done) - len(self.failed) - len(self.blocked)
        per_hour = workers * 3600 / mean if mean > 0 else None
        eta = round(remaining * mean / workers) if remaining > 0 else 0
        return {"mean_task_s": round(mean, 3), "tasks_per_hour": round(per_hour, 1) if per_hour else None,
                "eta_s": eta, "workers": workers}


def index_state(run: RunDir, plan: Plan, stage: str, index: int, upstream_state: str | None,
                scheduler: SchedulerView | None,
                listing: StageMarkers | None = None) -> tuple[str, str | None, DoneName | None]:
    """The state of one (stage, index): from `listing` (one scan of the stage's markers and parts) when
    given, so only a claim or a .failed record that the listing shows is opened."""
    fingerprint = plan.fingerprints[stage]
    listing = listing if listing is not None else StageMarkers.scan(run, stage)
    done = listing.done_info(run, stage, index, fingerprint)
    if done:
        return "done", None, done
    claim = read_claim(run.marker(stage, index, "claim")) if index in listing.claims else None
    if claim is None and upstream_state == "done":  # a run-wide step's one claim covers its indices
        claim = listing.run_claim(run, stage)
    if claim is not None:
        stale = claim.stale_reason(scheduler.job_alive if scheduler else None)
        if stale is None:
            return "running", None, None
        known = scheduler.task_state(stage, index) if scheduler else None
        if known and known[0] in ("pending", "running"):
            return known[0], known[1], None  # a resubmitted task will break the stale claim
        if known and known[0] == "failed":
            return "failed", f"{known[1]}; task died without a marker ({stale})", None
        return "failed", f"task died without a marker ({stale})", None
    known = scheduler.task_state(stage, index) if scheduler is not None else None
    if known is not None and known[0] in ("running", "pending"):
        # A queued retry outranks older failure records; but one waiting on a failed
        # predecessor will never run: that is blocked.
        if known[0] == "pending" and upstream_state in ("failed", "blocked"):
            return "blocked", None, None
        return known[0], known[1], None
    if upstream_state in ("failed", "blocked"):
        return "blocked", None, None
    if known is not None:
        return known[0], known[1], None
    failed = read_json(run.marker(stage, index, "failed")) if index in listing.failed else None
    if failed and failed.get("fingerprint") == fingerprint:
        return "failed", failed.get("error") or "failed", None
    return "not_started", None, None


def collect_status(run: RunDir, plan: Plan, scheduler: SchedulerView | None = None) -> dict[str, StageStatus]:
    result: dict[str, StageStatus] = {}
    upstream_bad: set[int] = set()  # failed or blocked in the stage before
    everything = set(range(plan.num_parts))
    for stage in plan.stages:
        status = StageStatus()
        listing = StageMarkers.scan(run, stage)
        # The common case in bulk: a name marker with this fingerprint beside its .done and part is done,
        # whatever a scheduler says (index_state checks done first too).
        fast = listing.seconds_done(plan.fingerprints[stage])
        done = {i: fast[i] for i in everything.intersection(fast)}
        for index in sorted(everything - done.keys()):
            state, reason, record = index_state(run, plan, stage, index, "failed" if index in upstream_bad else None,
                                                scheduler, listing)
            if state == "failed":
                status.failed[index] = reason or "failed"
            elif state == "done":
                done[index] = record.seconds
            else:
                getattr(status, state).append(index)
        status.done = sorted(done)
        status.task_seconds = [done[i] for i in status.done]
        upstream_bad = set(status.failed) | set(status.blocked)
        result[stage] = status
    return result


def stage_workers(scheduler: SchedulerView | None, stage: str, status: StageStatus) -> int:
    """Workers a stage's remaining tasks can count on: the local executor's pool while one runs, else the
    tasks of this stage running now (at least one)."""
    workers = getattr(scheduler, "workers", None) if scheduler is not None else None
    return workers if workers else max(1, len(status.running))


def status_document(run: RunDir, plan: Plan, scheduler: SchedulerView | None = None) -> dict:
    stages = collect_status(run, plan, scheduler)
    doc = {"workdir": str(run.root), "num_parts": plan.num_parts,
           "stages": {name: s.to_json(plan.num_parts, stage_workers(scheduler, name, s))
                      for name, s in stages.items()}}
    from stages import STAGES

    progress = {name: STAGES[name].load().progress(run, plan.config.stage_section(name)) for name in plan.stages}
    progress = {name: p for name, p in progress.items() if p is not None}
    if progress:
        doc["progress"] = progress
        lines = {name: STAGES[name].load().progress_line(p) for name, p in progress.items()}
        doc["progress_lines"] = {name: line for name, line in lines.items() if line}
    merge = scheduler.merge_state() if scheduler is not None and hasattr(scheduler, "merge_state") else None
    if merge is not None:
        table = run.metadata / "clips.parquet"
        doc["merge"] = {**merge, "table": str(table) if table.is_file() else None}
    if scheduler is not None and scheduler.note:
        doc["note"] = scheduler.note
    return doc


def rerun_selection(doc: dict, stages: list[str], indices: list[int] | None) -> tuple[list[int], list[int]]:
    """The indices a rerun of `stages` submits (the given ones, or with None every failed or blocked one)
    and those it leaves out as still queued or running: (chosen, busy)."""
    states = [doc["stages"][s] for s in stages]
    if indices is None:
        indices = sorted({int(i) for s in states for i in s["failed"]} | {i for s in states for i in s["blocked"]})
    busy = sorted({i for s in states for i in s["running"] + s["pending"]} & set(indices))
    return [i for i in indices if i not in busy], busy
