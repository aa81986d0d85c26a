"""What a running `curate local` still has queued, for `curate status` (and `--watch`) to see.

The local executor keeps its indices in memory; without this file an index it has yet to start reads
as `not started`, and `--watch` would stop while the executor still has work. Each executor writes
`local/queue-<host>-<pid>.json` (its workers and the indices still waiting or running, as an array
spec) when the set changes (at most once a second) and removes it when it ends. A reader trusts a file
whose process is alive (same host) or that was rewritten within the claim TTL (another host).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from .arrayspec import compact, parse_spec
from .markers import CLAIM_TTL_S, pid_alive
from .rundir import RunDir, atomic_write_json, read_json

WRITE_EVERY_S = 1.0
KEEPALIVE_S = 30.0
QUEUED_REASON = "queued locally"


def queue_dir(run: RunDir) -> Path:
    return run.root / "local"


class QueueFile:
    """The executor's side: `update(indices)` whenever its waiting + running set may have changed."""

    def __init__(self, run: RunDir, workers: int, stages: list[str]):
        self.path = queue_dir(run) / f"queue-{socket.gethostname()}-{os.getpid()}.json"
        self.doc = {"host": socket.gethostname(), "pid": os.getpid(), "workers": workers, "stages": stages,
                    "started": time.time(), "indices": ""}
        self.written_at = self.checked_at = -KEEPALIVE_S

    def update(self, indices, force: bool = False) -> None:
        """`indices`: the indices still waiting or running, or a callable giving them (called at most once
        a second, so a scheduler loop can call this every turn at no cost)."""
        now = time.monotonic()
        if not force and now - self.checked_at < WRITE_EVERY_S:
            return
        self.checked_at = now
        spec = compact(list(indices() if callable(indices) else indices))
        if spec == self.doc["indices"] and now - self.written_at < KEEPALIVE_S:
            return
        self.doc["indices"], self.doc["updated"], self.written_at = spec, time.time(), now
        try:
            atomic_write_json(self.path, self.doc)
        except OSError:
            pass  # status then shows these indices as not started; the run itself goes on

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def _live(doc: dict, path: Path) -> bool:
    if doc.get("host") == socket.gethostname():
        return bool(doc.get("pid")) and pid_alive(int(doc["pid"]))
    try:
        return time.time() - path.stat().st_mtime < CLAIM_TTL_S
    except OSError:
        return False


class LocalQueueView:
    """A SchedulerView over the live executors' queue files: their indices read as pending (queued locally)
    until a marker says more; `workers` is their pool size, for the status ETA."""

    note = None

    def __init__(self, run: RunDir, num_parts: int):
        self.queued: set[int] = set()
        self.workers = 0
        for path in sorted(queue_dir(run).glob("queue-*.json")):
            doc = read_json(path)
            if not isinstance(doc, dict) or not _live(doc, path):
                continue
            self.workers += int(doc.get("workers") or 0)
            if doc.get("indices"):
                try:
                    self.queued |= set(parse_spec(str(doc["indices"]), num_parts)[0])
                except Exception:  # a file from another manifest: ignore it
                    continue

    @property
    def active(self) -> bool:
        return bool(self.workers)

    def task_state(self, stage: str, index: int) -> tuple[str, str | None] | None:
        return ("pending", QUEUED_REASON) if index in self.queued else None

    def job_alive(self, job_id: str) -> bool | None:
        return None


class CombinedView:
    """Slurm's view first, then the local executors' (a run can have both, one after the other)."""

    def __init__(self, *views):
        self.views = [v for v in views if v is not None]
        self.note = next((v.note for v in self.views if v.note), None)
        self.workers = sum(getattr(v, "workers", 0) or 0 for v in self.views)

    def task_state(self, stage: str, index: int):
        for view in self.views:
            known = view.task_state(stage, index)
            if known is not None:
                return known
        return None

    def job_alive(self, job_id: str):
        for view in self.views:
            alive = view.job_alive(job_id)
            if alive is not None:
                return alive
        return None

    def merge_state(self):
        for view in self.views:
            if hasattr(view, "merge_state"):
                return view.merge_state()
        return None
