"""What Slurm says about a run's tasks: one batched squeue and one sacct call per refresh.

Plugs into `curate.status` as a SchedulerView. Submissions recorded in the run directory map
each array task ("<array job id>_<task id>") to its (stage, index); the latest submission of a
(stage, index) wins. Results are cached and refreshed at most every `min_interval` seconds, with
back-off when the scheduler does not answer; without accounting it says so once and uses squeue.
"""

from __future__ import annotations

import time

from .executors.slurm import load_submissions
from .rundir import RunDir, last_error_line
from .slurm_cli import FAILURE_STATES, PENDING_STATES, RUNNING_STATES, alive, job_alive, slurm

BLOCKED_REASONS = {"DependencyNeverSatisfied"}


class SlurmView:
    def __init__(self, run: RunDir, min_interval: float = 5.0):
        self.run = run
        self.note: str | None = None
        latest: dict[tuple[str, int], str] = {}
        self.chunk_jobs: set[str] = set()
        self.merge_job: str | None = None  # the latest submission's final-table job
        for sub in load_submissions(run):
            if sub.get("merge_job_id"):
                self.merge_job = sub["merge_job_id"]
                self.chunk_jobs.add(self.merge_job)
            for stage, chunks in sub["stages"].items():
                for chunk in chunks:
                    if not chunk.get("job_id"):
                        continue
                    self.chunk_jobs.add(chunk["job_id"])
                    for task in chunk["task_ids"]:  # a run-wide step is one plain job for all its indices
                        latest[(stage, chunk["offset"] + task)] = (chunk["job_id"] if chunk.get("run_wide")
                                                                   else f"{chunk['job_id']}_{task}")
        # "J_T" -> (stage, index), latest submission of each (stage, index) only
        self.by_task: dict[str, tuple[str, int]] = {job: key for key, job in latest.items()}
        self.task_of = latest
        self.min_interval = min_interval
        self._interval = min_interval
        self._fetched_at = 0.0
        self.queue: dict[str, tuple[str, str]] = {}  # "J_T" -> (state, reason)
        self.queue_ok = False
        self.acct: dict[str, tuple[str, str]] = {}  # "J_T" -> (state, exit code)
        self.accounting = True

    @property
    def has_jobs(self) -> bool:
        return bool(self.chunk_jobs)

    def refresh(self, force: bool = False) -> None:
        if not self.has_jobs or (not force and time.monotonic() - self._fetched_at < self._interval):
            return
        self._fetched_at = time.monotonic()
        ok = self._read_squeue()
        if self.accounting:
            ok = self._read_sacct() and ok
        # Back off while the controller struggles; return to the normal pace once it answers.
        self._interval = self.min_interval if ok else min(self._interval * 2, 120.0)

    def _read_squeue(self) -> bool:
        names = ",".join(sorted({f"curate-{stage}" for stage, _ in self.by_task.values()} | {"curate-merge"}))
        proc = slurm(["squeue", "-h", "-r", "-n", names, "-o", "%i|%T|%r"], timeout=30, required=False)
        if proc is None or proc.returncode != 0:
            self.queue_ok = False
            why = "not found or timed out" if proc is None else (proc.stderr.strip().splitlines() or ["failed"])[-1]
            self.note = f"squeue did not answer ({why}): queued and running jobs are not shown"
            return False
        queue = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and (parts[0] in self.by_task or parts[0] == self.merge_job):
                queue[parts[0]] = (parts[1], parts[2])
        self.queue, self.queue_ok = queue, True
        return True

    def _read_sacct(self) -> bool:
        proc = slurm(["sacct", "-n", "-P", "-X", "-j", ",".join(sorted(self.chunk_jobs)),
                      "--format=JobID,State,ExitCode"], timeout=30, required=False)
        if proc is None:
            return False
        if proc.returncode != 0:
            if "accounting storage is disabled" in (proc.stderr + proc.stdout).lower():
                self.accounting = False
                self.note = "Slurm accounting is off: states come from markers and squeue only"
                return True
            return False
        acct = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 3 and (parts[0] in self.by_task or parts[0] == self.merge_job):
                acct[parts[0]] = (parts[1].split()[0], parts[2])
        self.acct = acct
        return True

    # -- SchedulerView ---------------------------------------------------------------------------
    def task_state(self, stage: str, index: int) -> tuple[str, str | None] | None:
        job = self.task_of.get((stage, index))
        if job is None:
            return None
        self.refresh()
        if job in self.queue:
            state, reason = self.queue[job]
            if state in RUNNING_STATES:
                return "running", None
            if reason in BLOCKED_REASONS:
                return "blocked", reason
            return "pending", reason
        state, exit_code = self.acct.get(job, (None, None))
        if state in FAILURE_STATES:
            return "failed", self._reason(stage, job, state, exit_code)
        if state in PENDING_STATES:
            return "pending", state
        return None

    def _reason(self, stage: str, job: str, state: str, exit_code: str | None) -> str:
        detail = last_error_line(self.run.log_dir(stage) / f"{job}.err")
        text = f"{state} (job {job}, exit {exit_code})"
        return f"{text}: {detail}" if detail else text

    def merge_state(self) -> dict | None:
        """Where the final-table job of the latest submission stands."""
        if not self.merge_job:
            return None
        self.refresh()
        job = self.merge_job
        if job in self.queue:
            state, reason = self.queue[job]
            return {"job_id": job, "state": "running" if state in RUNNING_STATES else "pending", "reason": reason}
        state, exit_code = self.acct.get(job, (None, None))
        if state == "COMPLETED":
            return {"job_id": job, "state": "done", "reason": None}
        if state in FAILURE_STATES:
            detail = last_error_line(self.run.log_dir("merge") / f"{job}.err")
            return {"job_id": job, "state": "failed", "reason": f"{state} (exit {exit_code})" + (f": {detail}" if detail
                                                                                               else "")}
        return {"job_id": job, "state": "pending" if state in PENDING_STATES else "unknown", "reason": state}

    def job_alive(self, job_id: str) -> bool | None:
        self.refresh()
        if job_id in self.queue:
            return alive(self.queue[job_id][0])
        if job_id in self.by_task:
            return False if self.queue_ok else None
        return job_alive(job_id)
