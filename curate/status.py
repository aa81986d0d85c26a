"""Where every (stage, index) of a run stands, from the markers alone or merged with a scheduler.

A scheduler view (the Slurm one reads squeue/sacct) plugs in through `SchedulerView`: it can
say a task is pending or running, that a job died without writing a marker, and whether a claim's
job still exists. Without one, markers and claims (with their heartbeat) are the whole truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from .markers import read_claim, read_done
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
    task_seconds: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)

    def to_json(self, total: int) -> dict:
        doc = {
            "done": self.done, "running": self.running, "pending": self.pending,
            "failed": {str(k): v for k, v in sorted(self.failed.items())},
            "blocked": self.blocked, "not_started": self.not_started, "total": total,
        }
        doc.update(self.rates(total))
        return doc

    def rates(self, total: int) -> dict:
        """Throughput over the finished tasks and a naive ETA for the rest at that pace."""
        if not self.task_seconds:
            return {"mean_task_s": None, "tasks_per_hour": None, "eta_s": None}
        mean = sum(self.task_seconds) / len(self.task_seconds)
        span = max(self.finished_at) - min(self.finished_at) if len(self.finished_at) > 1 else 0
        per_hour = 3600 * (len(self.finished_at) - 1) / span if span > 0 else 3600 / mean
        remaining = total - len(self.done) - len(self.failed) - len(self.blocked)
        return {"mean_task_s": round(mean, 3), "tasks_per_hour": round(per_hour, 1),
                "eta_s": round(remaining * 3600 / per_hour) if remaining > 0 else 0}


def index_state(run: RunDir, plan: Plan, stage: str, index: int, upstream_state: str | None,
                scheduler: SchedulerView | None) -> tuple[str, str | None, dict | None]:
    fingerprint = plan.fingerprints[stage]
    done = read_done(run, stage, index, fingerprint)
    if done:
        return "done", None, done
    claim = read_claim(run.marker(stage, index, "claim"))
    if claim is None and upstream_state == "done":  # a run-wide step's one claim covers its indices
        claim = read_claim(run.marker_dir(stage) / "run.claim")
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
    failed = read_json(run.marker(stage, index, "failed"))
    if failed and failed.get("fingerprint") == fingerprint:
        return "failed", failed.get("error") or "failed", None
    return "not_started", None, None


def collect_status(run: RunDir, plan: Plan, scheduler: SchedulerView | None = None) -> dict[str, StageStatus]:
    result: dict[str, StageStatus] = {}
    upstream_states: dict[int, str] = {}
    for stage in plan.stages:
        status = StageStatus()
        states: dict[int, str] = {}
        for index in range(plan.num_parts):
            state, reason, done = index_state(run, plan, stage, index, upstream_states.get(index), scheduler)
            states[index] = state
            if state == "failed":
                status.failed[index] = reason or "failed"
            else:
                getattr(status, state).append(index)
            if done:
                status.task_seconds.append(float(done.get("seconds", 0)))
                status.finished_at.append(float(done.get("finished", time.time())))
        upstream_states = states
        result[stage] = status
    return result


def status_document(run: RunDir, plan: Plan, scheduler: SchedulerView | None = None) -> dict:
    stages = collect_status(run, plan, scheduler)
    doc = {"workdir": str(run.root), "num_parts": plan.num_parts,
           "stages": {name: s.to_json(plan.num_parts) for name, s in stages.items()}}
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
