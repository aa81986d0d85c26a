"""caption: text for the kept clips from any OpenAI-compatible chat-completions server or a
file-upload API, resumable and cost-accounted.

Frames come from the decode loop (`frames` spread over each clip, `frame_size` short side, JPEG).
Requests run `max_workers` at a time while the next clips decode. Every answer is appended to a
side file of the task (`stages/caption/part-NNNNN.answers.<settings>.jsonl`, flushed and fsynced
before the request counts as done), so a task killed at its time limit, preempted or `kill -9`ed
sends only the clips still without an answer when it runs again, and nothing is paid twice.
`max_cost_usd` is one budget for the whole run (`caption_ledger.Budget`: a ledger every task reserves from before
sending). A signal stops sending at once: no new attempt, no wait for hanging requests. The API key
is read from the variable named by `api_key_env` only and goes into the Authorization header; every
server text passes the scrubber before it is written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from curate.errors import CurateError
from curate.hashing import stable_hash
from curate.sections import Runtime, StageSection

from .base import Stage, by_video, earlier_decisions, target_clips
from .caption_ledger import AnswerStore, Budget, read_answers
from .decode import scan_clips
from .sampling import FrameNeed

POLL_S = 0.2  # longest wait of the main thread, so that a signal stops it at once
BUDGET_POLL_S = 0.5  # how often a task waiting for the run-wide budget asks the ledger again
COLUMNS = {"caption": "Utf8", "caption_model": "Utf8", "caption_tokens_in": "Int64", "caption_tokens_out": "Int64",
           "caption_cost_usd": "Float64", "caption_error": "Utf8"}


class CaptionConfig(StageSection):
    enabled: bool = False
    provider: Literal["openai", "api"] = "openai"
    base_url: str = "https://openrouter.ai/api/v1"
    model: str = "openai/gpt-4o-mini"
    api_key_env: str | None = "OPENROUTER_API_KEY"
    frames: int = Field(default=3, ge=1)
    frame_size: int = Field(default=512, ge=32)
    system_prompt: str = "You write captions of video clips for training a text-to-video model."
    user_prompt: str = ("These images are frames of one short video clip, in time order. Describe the clip in one "
                        "paragraph: the subjects, the action and motion, the setting, the camera (angle, movement) "
                        "and the visual style. Do not mention that these are frames or images.")
    max_tokens: int = Field(default=300, ge=1)
    temperature: float = Field(default=0.2, ge=0, le=2)
    extra_body: dict = Field(default_factory=dict)
    only_kept: bool = True
    max_workers: int = Runtime(8, ge=1)
    timeout_s: float = Runtime(60.0, gt=0)
    max_retries: int = Runtime(5, ge=0)
    max_cost_usd: float | None = Runtime(None, gt=0)
    # provider: api (multipart upload of the frames)
    url: str | None = None
    file_field: str = "file"
    response_field: str = "caption"
    extra_fields: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Runtime(default_factory=dict)

    @model_validator(mode="after")
    def _api_needs_url(self) -> CaptionConfig:
        if self.enabled and self.provider == "api" and not self.url:
            raise ValueError("caption.provider api needs caption.url (the upload endpoint)")
        return self

    def answers_key(self) -> str:
        """What makes an answer: changing any of these asks again, changing anything else does not."""
        return stable_hash({k: getattr(self, k) for k in (
            "provider", "base_url", "model", "frames", "frame_size", "system_prompt", "user_prompt", "max_tokens",
            "temperature", "extra_body", "url", "file_field", "response_field", "extra_fields")})[:10]


class FrameGrabber:
    """Decode-loop consumer: the clip's sampled frames as JPEG bytes."""

    def __init__(self, cfg: CaptionConfig):
        self.need = FrameNeed(short_side=cfg.frame_size, color="bgr", count=cfg.frames)

    def begin(self, clip: dict) -> None:
        self.jpegs: list[bytes] = []

    def feed(self, frame) -> None:
        import cv2

        ok, data = cv2.imencode(".jpg", frame.image(self.need), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if ok:
            self.jpegs.append(data.tobytes())

    def end(self) -> list[bytes]:
        return self.jpegs


class CaptionStage(Stage):
    name = "caption"
    in_calibration = False  # it pays per clip

    @classmethod
    def columns(cls, cfg) -> dict[str, str]:
        return dict(COLUMNS)

    @classmethod
    def fingerprint_inputs(cls, config) -> dict:
        return earlier_decisions(config, cls.name) if config.caption.only_kept else {}

    @classmethod
    def progress(cls, run, cfg) -> dict:
        """Captions answered / clips to caption so far, and the tokens and cost the server reported."""
        folder = run.root / "stages" / cls.name
        key = cfg.answers_key()
        doc = {"clips": 0, "answered": 0, "captions": 0, "errors": 0, "tokens_in": 0, "tokens_out": 0,
               "cost_usd": 0.0}
        for total in folder.glob(f"part-*.answers.{key}.total.json"):
            try:
                doc["clips"] += int(json.loads(total.read_text())["total"])
            except (ValueError, KeyError, OSError):
                continue
        for path in folder.glob(f"part-*.answers.{key}.jsonl"):
            for answer in read_answers(path):
                doc["answered"] += 1
                doc["captions" if answer.get("caption") else "errors"] += 1
                doc["tokens_in"] += answer.get("tokens_in") or 0
                doc["tokens_out"] += answer.get("tokens_out") or 0
                doc["cost_usd"] += answer.get("cost_usd") or 0.0
        doc["cost_usd"] = round(doc["cost_usd"], 6)
        return doc

    @classmethod
    def progress_line(cls, progress: dict) -> str | None:
        without = f" ({progress['errors']} without: see caption_error)" if progress["errors"] else ""
        return (f"captions: {progress['captions']} of {progress['clips']} clips so far{without}; "
                f"tokens {progress['tokens_in']:,} in / {progress['tokens_out']:,} out; "
                f"cost reported ${progress['cost_usd']:.4f}")

    def preflight(self) -> None:
        name = self.cfg.api_key_env
        self.api_key = os.environ.get(name) if name else None
        if name and not self.api_key:
            raise CurateError(f"caption.api_key_env: the variable {name} is not set; export it where the tasks run "
                              "(the key is read from the environment only), or set caption.api_key_env: null for "
                              "a server that needs no key")
        try:
            import httpx  # noqa: F401
            import tenacity  # noqa: F401
        except ImportError as exc:
            raise CurateError(f"caption needs {exc.name}: pip install httpx tenacity (bash scripts/setup.sh)") from None

    def answers_path(self) -> Path:
        part = self.ctx.run.stage_part(self.name, self.ctx.index)
        return part.with_name(f"{part.stem}.answers.{self.cfg.answers_key()}.jsonl")

    def run(self, rows):
        from curate.rundir import atomic_write_json

        from .schema import frame

        targets = target_clips(rows, self.ctx.plan.config, self.name, self.cfg.only_kept)
        path = self.answers_path()
        store = AnswerStore(path)
        answered = store.load()
        todo = [c for c in targets if c["clip_id"] not in answered]
        atomic_write_json(path.with_name(path.stem + ".total.json"), {"total": len(targets)})
        self.ctx.log(f"caption[{self.ctx.index}] {len(targets)} clips, {len(targets) - len(todo)} answered before, "
                     f"{len(todo)} to send")
        try:
            self._caption(todo, store)
        finally:
            store.close()
        self.ctx.stats.update(captions=sum(1 for a in store.answers.values() if a.get("caption")),
                              caption_cost_usd=round(store.cost(), 6))
        out = []
        for row in rows.to_dicts():
            answer = store.answers.get(row.get("clip_id"))
            if answer is not None:  # record keys are the column names without the caption_ prefix
                row.update({column: answer.get(column.removeprefix("caption_")) for column in COLUMNS})
            out.append(row)
        return frame(out, {**dict(rows.schema), **COLUMNS})

    def _budget(self, store: AnswerStore) -> Budget | None:
        """The run-wide ledger when max_cost_usd is set, with this index recounted from its side files."""
        if self.cfg.max_cost_usd is None:
            return None
        folder = store.path.parent
        others = [p for p in folder.glob(store.path.name.split(".", 1)[0] + ".answers.*.jsonl") if p != store.path]
        budget = Budget(folder, self.cfg, self.ctx.index,
                        sum(a.get("cost_usd") or 0.0 for p in others for a in read_answers(p)))
        budget.start(store.cost())
        return budget

    def _caption(self, clips: list[dict], store: AnswerStore) -> None:
        import signal
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        from curate.faults import HANDLED_SIGNALS

        from .caption_client import CaptionClient, Stopped, Systemic, Transient

        if not clips:
            return
        cfg = self.cfg
        budget = self._budget(store)
        videos = by_video(clips)
        client = CaptionClient(cfg, self.api_key)
        grabber = FrameGrabber(cfg)
        inflight: dict = {}
        transient: dict[str, str] = {}
        systemic: list[Exception] = []
        budget_hit = False

        def ask(jpegs: list[bytes], clip_id: str) -> None:
            """One clip, in a worker: its answer is on disk and in the ledger before the request counts as done."""
            try:
                answer = client.caption(jpegs, clip_id)
            except BaseException:
                if budget is not None:
                    budget.settle(clip_id)
                raise
            store.add({"clip_id": clip_id, "caption": answer.caption, "error": answer.error,
                       "model": answer.model or cfg.model, "tokens_in": answer.tokens_in,
                       "tokens_out": answer.tokens_out, "cost_usd": answer.cost_usd, "at": time.time()})
            if budget is not None:
                budget.settle(clip_id, store, answer.cost_usd)

        def settle(timeout: float = POLL_S) -> None:
            # Never an unbounded wait: a signal delivered to another thread runs its handler (TaskInterrupted)
            # only when the main thread wakes up.
            done, _ = wait(list(inflight), timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                clip_id = inflight.pop(future)
                try:
                    future.result()
                except Transient as exc:
                    transient[clip_id] = str(exc)
                except Systemic as exc:
                    systemic.append(exc)
                    client.stop.set()  # the requests in flight get no retries
                except Stopped:
                    pass

        def may_send(clip_id: str) -> bool:
            nonlocal budget_hit
            while budget is not None and not systemic:
                verdict = budget.reserve(clip_id)
                if verdict is None:
                    return True
                if verdict == Budget.OVER:
                    budget_hit = True
                    return False
                settle(BUDGET_POLL_S) if inflight else time.sleep(BUDGET_POLL_S)  # others' requests in flight
            return not systemic

        # Workers block the task's signals so that the kernel delivers them to the main thread.
        pool = ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="curate-caption",
                                  initializer=signal.pthread_sigmask, initargs=(signal.SIG_BLOCK, HANDLED_SIGNALS))
        finished = False
        try:
            for n, (path, video_clips) in enumerate(videos.items(), 1):
                self.ctx.log(f"caption[{self.ctx.index}] {n}/{len(videos)} {video_clips[0]['relpath']}: "
                             f"{len(video_clips)} clips")
                try:
                    for scan in scan_clips(path, video_clips, [grabber]):
                        jpegs = grabber.end()
                        while len(inflight) >= cfg.max_workers:  # decode ahead by at most one round
                            settle()
                        clip_id = scan.clip["clip_id"]
                        if jpegs and not may_send(clip_id):
                            break
                        if not jpegs:
                            store.add({"clip_id": clip_id, "caption": None, "at": time.time(),
                                       "error": "no frame decoded in the clip's range", "model": cfg.model})
                            continue
                        inflight[pool.submit(ask, jpegs, clip_id)] = clip_id
                except Exception as exc:  # a broken video leaves its clips for the error column, not the task
                    if isinstance(exc, (Systemic, CurateError)):
                        raise
                    for clip in video_clips:
                        if clip["clip_id"] not in store.answers and clip["clip_id"] not in inflight.values():
                            store.add({"clip_id": clip["clip_id"], "caption": None, "model": cfg.model,
                                       "error": f"decode failed: {type(exc).__name__}: {exc}", "at": time.time()})
                if systemic or budget_hit:
                    break
            while inflight:
                settle()
            finished = True
        finally:
            # A signal or an error: no attempt starts after this, and nobody waits for the requests still
            # hanging (the task's exit ends them); what they answer meanwhile is still recorded.
            client.stop.set()
            pool.shutdown(wait=finished, cancel_futures=True)
            if finished:
                client.close()
        if systemic:
            raise systemic[0]
        left = len(clips) - sum(1 for c in clips if c["clip_id"] in store.answers)
        spent = budget.spent() if budget is not None else 0.0
        if budget_hit or (budget is not None and left and spent >= cfg.max_cost_usd):
            raise CurateError(f"caption.max_cost_usd={cfg.max_cost_usd:g} reached: ${spent:.4f} reported by this run; "
                              f"{left} clips of index {self.ctx.index} have no caption yet. "
                              "Raise the limit and run again: answered clips are not sent again")
        if transient:
            first = next(iter(transient.values()))
            raise CurateError(f"{len(transient)} clips got no answer ({first}); run the task again: only clips "
                              "without an answer are sent")
