"""What the caption stage keeps on disk: each task's answers side file (`AnswerStore`, every answer
flushed and fsynced before it counts) and the run-wide `max_cost_usd` ledger (`Budget`) that every
task reserves from before sending."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ANSWERS_GLOB = "part-*.answers.*.jsonl"


def read_answers(path: Path) -> list[dict]:
    """The answers recorded in one side file; a line a kill cut short is left out (that clip is asked again)."""
    answers = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return answers
    for line in lines:
        try:
            answers.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return answers


class AnswerStore:
    """The side file of one task: one JSON line per answered clip, appended as answers arrive.

    `add` returns only once the line is flushed (and fsynced), so an answer the task counts is on
    disk: a kill -9 right after it loses nothing that was paid for.
    """

    def __init__(self, path: Path):
        self.path = path
        self.answers: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.handle = None

    def load(self) -> dict[str, dict]:
        self.answers.update({record["clip_id"]: record for record in read_answers(self.path)})
        return self.answers

    def add(self, record: dict) -> dict:
        from curate.secrets import scrub

        line = scrub(json.dumps(record))  # captions and errors are server text: the key may be echoed
        record = json.loads(line)  # what goes into the part is what went to disk
        with self.lock:
            if self.handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.handle = open(self.path, "a")
            self.handle.write(line + "\n")
            self.handle.flush()
            self.answers[record["clip_id"]] = record
            fd = self.handle.fileno()
        try:
            os.fsync(fd)  # outside the lock: the workers' fsyncs overlap with their requests
        except OSError:
            pass  # closed by a stopping task: the flushed line survives the process anyway
        return record

    def close(self) -> None:
        with self.lock:
            if self.handle is not None:
                self.handle.close()
                self.handle = None

    def cost(self) -> float:
        return sum(a.get("cost_usd") or 0.0 for a in self.answers.values())


def answers_index(path: Path) -> str:
    return str(int(path.name.split(".", 1)[0].removeprefix("part-")))


class Budget:
    """`max_cost_usd` for the whole run: one ledger in the stage folder (`budget.json`) that every
    task changes under a POSIX fcntl lock (`budget.lock`, shared by NFS clients), reserving a
    request's cost before it is sent.

    The ledger holds what each index's side files cost (`spent`), the reservations in flight and the
    largest answer cost seen. A request goes only while spent + reserved < max_cost_usd; it reserves
    the largest answer cost seen so far (before the run's first answer, only one request of the run
    is out at a time), so the run buys no more than one task sending one request at a time would. A
    killed task's reservations count until its index runs again (which recounts its side files) or
    until they expire (then they count as paid).
    """

    WAIT, OVER = "wait", "over"

    def __init__(self, folder: Path, cfg, index: int, other_keys_cost: float):
        from .caption_client import MAX_RETRY_AFTER_S

        self.path, self.lock_path = folder / "budget.json", folder / "budget.lock"
        self.cap, self.index, self.other_keys_cost = cfg.max_cost_usd, str(index), other_keys_cost
        self.ttl_s = (cfg.timeout_s + MAX_RETRY_AFTER_S) * (cfg.max_retries + 1)  # a request's longest life
        self.thread_lock = threading.Lock()  # fcntl locks are per process: the workers take turns here

    @contextmanager
    def ledger(self):
        import fcntl

        from curate.rundir import atomic_write_json

        with self.thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                try:
                    doc = json.loads(self.path.read_text())
                except FileNotFoundError:
                    doc = self.seed()
                yield doc
                atomic_write_json(self.path, doc)
            finally:
                os.close(fd)  # releases the lock

    def seed(self) -> dict:
        """A new ledger counts every answer already on disk (from a run that had no limit before)."""
        spent: dict[str, float] = {}
        largest = None
        for path in self.path.parent.glob(ANSWERS_GLOB):
            for answer in read_answers(path):
                cost = answer.get("cost_usd") or 0.0
                spent[answers_index(path)] = spent.get(answers_index(path), 0.0) + cost
                largest = max(largest or 0.0, cost)
        return {"spent": spent, "reserved": {}, "largest_answer_usd": largest}

    def start(self, own_cost: float) -> float:
        """Recount this index (an earlier attempt may have died with reservations out); the run's spend."""
        with self.ledger() as doc:
            doc["spent"][self.index] = self.other_keys_cost + own_cost
            doc["reserved"] = {k: r for k, r in doc["reserved"].items() if r["index"] != self.index}
            return sum(doc["spent"].values())

    def reserve(self, clip_id: str) -> str | None:
        """None: send it. WAIT: the requests in flight could reach the limit. OVER: the limit is reached."""
        now = time.time()
        with self.ledger() as doc:
            for key, r in list(doc["reserved"].items()):
                if r["until"] < now:  # its task died: count it as paid until that index is recounted
                    del doc["reserved"][key]
                    doc["spent"][r["index"]] = doc["spent"].get(r["index"], 0.0) + r["usd"]
            spent = sum(doc["spent"].values())
            if spent >= self.cap:
                return self.OVER
            largest, reserved = doc["largest_answer_usd"], doc["reserved"]
            if (largest is None and reserved) or spent + sum(r["usd"] for r in reserved.values()) >= self.cap:
                return self.WAIT
            reserved[f"{self.index}:{clip_id}"] = {"usd": largest or 0.0, "index": self.index,
                                                   "until": now + self.ttl_s}
            return None

    def settle(self, clip_id: str, store: AnswerStore | None = None, cost: float | None = None) -> None:
        """The request is over: drop its reservation and, after an answer, recount this index."""
        with self.ledger() as doc:
            doc["reserved"].pop(f"{self.index}:{clip_id}", None)
            if store is not None:
                doc["spent"][self.index] = self.other_keys_cost + store.cost()
                doc["largest_answer_usd"] = max(doc["largest_answer_usd"] or 0.0, cost or 0.0)

    def spent(self) -> float:
        with self.ledger() as doc:
            return sum(doc["spent"].values())
