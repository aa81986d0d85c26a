"""Claim, done and failed markers of one (stage, index).

Claims are written in full under a temp name, then hard-linked into place: link fails when the
name exists (like O_CREAT|O_EXCL) and is atomic on local disks, NFSv3+ and Lustre, unlike
flock/fcntl locks, so a claim is always complete or absent. A holder refreshes the claim's
mtime (heartbeat); a claim is stale when its process is gone (same host), it was left by an
earlier attempt of our own Slurm array task (a requeue after a node failure keeps the job id),
its Slurm job is gone, or its heartbeat is older than the TTL. Breaking a stale claim renames
it away first, so of two breakers only one wins.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import CurateError
from .rundir import INDEX_WIDTH, RunDir, atomic_write_json, read_json, write_temp

HEARTBEAT_S = float(os.environ.get("CURATE_HEARTBEAT_S", "30"))
CLAIM_TTL_S = float(os.environ.get("CURATE_CLAIM_TTL_S", "600"))

# Asked whether a Slurm job still exists: returns True/False, or None when it cannot tell.
JobAliveCheck = Callable[[str], "bool | None"]


def own_job_id() -> str | None:
    """This process's Slurm job as squeue names it: "J_T" for an array task, "J" otherwise."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def current_owner() -> dict:
    return {
        "job_id": own_job_id(),
        "attempt": int(os.environ.get("SLURM_RESTART_COUNT") or 0) + 1,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": time.time(),
        "token": uuid.uuid4().hex,
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class ClaimInfo:
    owner: dict
    heartbeat_age_s: float

    def stale_reason(self, job_alive: JobAliveCheck | None = None, own_job: str | None = None) -> str | None:
        """Why this claim is stale, or None when its holder may still be working.

        `own_job` is the asking task's Slurm job id: Slurm runs one attempt of a job at a time, so a
        claim holding our own job id was left by an earlier attempt of ours (then requeued), even
        though squeue says that job is alive: it is us.
        """
        owner = self.owner
        if owner.get("host") == socket.gethostname() and owner.get("pid"):
            if not pid_alive(int(owner["pid"])):
                return f"process {owner['pid']} on {owner['host']} is gone"
        if own_job and owner.get("job_id") == own_job:
            return f"left by an earlier attempt of this job ({own_job} on {owner.get('host')})"
        if owner.get("job_id") and job_alive is not None:
            if job_alive(str(owner["job_id"])) is False:
                return f"Slurm job {owner['job_id']} is gone"
        if self.heartbeat_age_s > CLAIM_TTL_S:
            return f"no heartbeat for {self.heartbeat_age_s:.0f} s (TTL {CLAIM_TTL_S:.0f} s)"
        return None


def read_claim(path: Path) -> ClaimInfo | None:
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    owner = read_json(path)
    if owner is None:
        # Unreadable: left by an older curate that created claims before writing them.
        owner = {}
    return ClaimInfo(owner, max(0.0, time.time() - mtime))


class Claim:
    """A held claim; `release()` removes it only if it is still ours."""

    def __init__(self, path: Path, owner: dict, broken: list[str] | None = None):
        self.path = path
        self.owner = owner
        self.broken = broken or []  # why each stale claim we broke to get here was stale
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start_heartbeat(self, interval_s: float = HEARTBEAT_S) -> None:
        def beat() -> None:
            while not self._stop.wait(interval_s):
                try:
                    os.utime(self.path)
                except FileNotFoundError:
                    return

        self._thread = threading.Thread(target=beat, name="curate-heartbeat", daemon=True)
        self._thread.start()

    def still_ours(self) -> bool:
        current = read_json(self.path)
        return bool(current) and current.get("token") == self.owner["token"]

    def release(self) -> None:
        self._stop.set()
        if self.still_ours():
            self.path.unlink(missing_ok=True)


def try_claim(path: Path, job_alive: JobAliveCheck | None = None) -> tuple[Claim | None, dict | None]:
    """Take the claim. Returns (claim, None) or (None, owner of the live claim that blocks us)."""
    owner = current_owner()
    try:
        # Written in full under a temp name first, then linked into place (link fails if the name
        # exists, like O_EXCL): a claim is complete or absent, even when the disk fills up.
        tmp = write_temp(path, json.dumps(owner).encode())
    except OSError as exc:
        raise CurateError(f"cannot write the claim {path}: {exc.strerror or exc}; "
                          "free space (or fix permissions) in the run directory and run again") from None
    try:
        return _link_claim(tmp, path, owner, job_alive)
    finally:
        tmp.unlink(missing_ok=True)


def _link_claim(tmp: Path, path: Path, owner: dict,
                job_alive: JobAliveCheck | None) -> tuple[Claim | None, dict | None]:
    broken: list[str] = []
    for _ in range(3):
        try:
            os.link(tmp, path)
        except FileExistsError:
            info = read_claim(path)
            if info is None:
                continue  # released between our link and our read
            stale = info.stale_reason(job_alive, owner["job_id"])
            if stale is None:
                return None, info.owner
            # Rename is atomic: only one breaker gets the stale file, the other sees it gone.
            broken_path = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, broken_path)
            except FileNotFoundError:
                continue
            if (read_json(broken_path) or {}) != info.owner:
                # Another breaker replaced the stale claim with a live one before our rename:
                # put theirs back (link fails rather than overwrite if the name is taken).
                try:
                    os.link(broken_path, path)
                except FileExistsError:
                    pass
            broken_path.unlink(missing_ok=True)
            broken.append(stale)
            continue
        return Claim(path, owner, broken), None
    info = read_claim(path)
    return None, info.owner if info else {}


def done_name(index: int, record: dict) -> str | None:
    """The empty file beside `.done` whose name carries what `curate status` needs: the fingerprint, the
    finish time and the task's seconds (ms). One directory listing per stage then gives every index's state
    without opening a file per index (a Lustre/NFS metadata server pays per open, not per listed name)."""
    fingerprint = record.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint.isalnum():
        return None
    try:
        finished, seconds = round(float(record["finished"]) * 1000), round(float(record["seconds"]) * 1000)
    except (KeyError, TypeError, ValueError):
        return None
    return f"{index:0{INDEX_WIDTH}d}.ok.{fingerprint}.{finished}.{seconds}"


class DoneName(NamedTuple):  # a tuple: status makes one per done index, 100,000s of them
    fingerprint: str
    finished: float  # epoch seconds
    seconds: float


def read_done(run: RunDir, stage: str, index: int, fingerprint: str) -> dict | None:
    """The .done record of (stage, index) if it is for this fingerprint and its part exists."""
    record = read_json(run.marker(stage, index, "done"))
    if record and record.get("fingerprint") == fingerprint and run.stage_part(stage, index).is_file():
        return record
    return None


def write_done(run: RunDir, stage: str, index: int, record: dict) -> None:
    """The .done record, then its name marker (done_name).

    Order keeps one promise for `curate status`: a name marker exists only while the .done beside it holds
    that fingerprint. The old name goes before the record changes; the new one comes after it is written. A
    crash in between leaves no name, and status then reads the record itself."""
    path = run.marker(stage, index, "done")
    previous = read_json(path)
    old_name = done_name(index, previous) if isinstance(previous, dict) else None
    if old_name is not None:
        (path.parent / old_name).unlink(missing_ok=True)
    elif path.exists():  # a record we cannot read: any name of this index may be out of date
        for stale in path.parent.glob(f"{index:0{INDEX_WIDTH}d}.ok.*"):
            stale.unlink(missing_ok=True)
    atomic_write_json(path, record)
    name = done_name(index, record)
    if name is not None:
        # Empty: the name is the content. Created with 0o666 so its mode follows the umask like every file.
        os.close(os.open(path.parent / name, os.O_CREAT | os.O_WRONLY, 0o666))
    run.marker(stage, index, "failed").unlink(missing_ok=True)


@dataclass
class StageMarkers:
    """One stage's markers and parts as two directory listings: which indices have a .done (and what their
    name marker says), a claim, a .failed record, a part. Details are read only where a state needs them.

    The listing is kept as one string and searched with regular expressions (C speed): at 100,000 indices
    a Python step per name would cost more than the listing itself."""

    listing: str = ""
    done: set[int] = field(default_factory=set)
    claims: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    parts: set[int] = field(default_factory=set)
    _named: set[int] | None = None  # indices with a name marker of whatever fingerprint (found when asked)
    _by_fingerprint: dict = field(default_factory=dict)
    _run_claim: list = field(default_factory=list)  # [claim or None] once read

    @classmethod
    def scan(cls, run: RunDir, stage: str) -> StageMarkers:
        listing = "\n".join(_names(run.marker_dir(stage)))
        found = cls(listing)
        kinds = {"done": found.done, "claim": found.claims, "failed": found.failed}
        for head, kind in _MARKER.findall(listing):
            kinds[kind].add(int(head))
        found.parts = stage_parts(run, stage)
        return found

    def run_claim(self, run: RunDir, stage: str):
        """The one claim of a run-wide stage (markers/<stage>/run.claim), read once per listing."""
        if not self._run_claim:
            there = re.search(r"^run\.claim$", self.listing, re.MULTILINE) is not None
            self._run_claim.append(read_claim(run.marker_dir(stage) / "run.claim") if there else None)
        return self._run_claim[0]

    @property
    def named(self) -> set[int]:
        """Indices with a name marker of any fingerprint: only needed for a .done without one of ours (after
        a config change, or from an older curate), so searched only then."""
        if self._named is None:
            self._named = set(map(int, _ANY_NAME.findall(self.listing)))
        return self._named

    def seconds_done(self, fingerprint: str) -> dict[int, float]:
        """index -> task seconds, for every index whose name marker has this fingerprint and whose .done and
        part are there: done, as the contract's read_done would say (the record holds that fingerprint)."""
        if fingerprint not in self._by_fingerprint:
            pattern = re.compile(rf"^(\d+)\.ok\.{re.escape(fingerprint)}\.\d+\.(\d+)$", re.MULTILINE)
            both = self.done & self.parts
            found = {int(head): int(ms) / 1000 for head, ms in pattern.findall(self.listing)}
            self._by_fingerprint[fingerprint] = {i: v for i, v in found.items() if i in both}
        return self._by_fingerprint[fingerprint]

    def done_info(self, run: RunDir, stage: str, index: int, fingerprint: str) -> DoneName | None:
        """What read_done says for (stage, index), mostly from the listing: a name marker with this
        fingerprint (the record holds it too), else the record itself when there is one without a name
        (a run from before name markers, or a task stopped between the two writes)."""
        if index not in self.done or index not in self.parts:
            return None
        if index in self.named:
            seconds = self.seconds_done(fingerprint).get(index)
            return None if seconds is None else DoneName(fingerprint, 0.0, seconds)
        record = read_done(run, stage, index, fingerprint)
        if record is None:
            return None
        return DoneName(fingerprint, float(record.get("finished") or 0), float(record.get("seconds") or 0))

    def done_indices(self, run: RunDir, stage: str, fingerprint: str, indices) -> set[int]:
        fast = self.seconds_done(fingerprint).keys()
        return {i for i in indices if i in fast or (i not in self.named and
                                                    self.done_info(run, stage, i, fingerprint) is not None)}


# NNNNN.done|claim|failed; a name marker NNNNN.ok.<fingerprint>.<finished ms>.<seconds ms>
_MARKER = re.compile(r"^(\d+)\.(done|claim|failed)$", re.MULTILINE)
_ANY_NAME = re.compile(r"^(\d+)\.ok\.[0-9A-Za-z]+\.\d+\.\d+$", re.MULTILINE)
_PART = re.compile(r"^part-(\d+)\.parquet$", re.MULTILINE)


def stage_parts(run: RunDir, stage: str) -> set[int]:
    """The indices that have a part of `stage` (stages/<stage>/part-NNNNN.parquet), from one listing."""
    return set(map(int, _PART.findall("\n".join(_names(run.stage_part(stage, 0).parent)))))


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def write_failed(run: RunDir, stage: str, index: int, record: dict) -> None:
    path = run.marker(stage, index, "failed")
    previous = read_json(path) or {}
    # Keep every attempt's failure: a retry must not erase why the last one died.
    record["attempts"] = previous.get("attempts", []) + [
        {k: record.get(k) for k in ("error", "owner", "finished")}]
    atomic_write_json(path, record)
