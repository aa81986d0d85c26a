"""Talking to a captioning service: an OpenAI-compatible chat-completions server (OpenRouter,
OpenAI, vLLM, SGLang, llama.cpp) or a file-upload API. httpx does HTTP, tenacity the retries.

Outcomes of one request:
- an `Answer` (caption text or a malformed-answer error, with token counts and cost if reported);
- `Transient` after the retries are spent (429, 5xx, time-outs, dropped connections): the clip is
  left for a rerun, nothing is recorded;
- `Systemic` at once for 400/401/403/404 and other 4xx: bad key, unknown model, wrong URL — no
  point in sending the other clips;
- `Stopped` once the task is stopping (`CaptionClient.stop` set): no new attempt, no back-off wait.
The API key goes only into the Authorization header; text from the server passes the scrubber
(`short`), since a server may echo the header back.
"""

from __future__ import annotations

import base64
import email.utils
import threading
import time
from dataclasses import dataclass

from curate.errors import CurateError
from curate.secrets import scrub

MAX_RETRY_AFTER_S = 120.0


@dataclass
class Answer:
    caption: str | None
    error: str | None
    model: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None


class Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Systemic(CurateError):
    """The service refuses the requests themselves; the task stops."""


class Stopped(Exception):
    """The task is stopping (a signal, a systemic error): this request is not sent (again)."""


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds, from a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def short(text: str, limit: int = 200) -> str:
    """Server text for a message or a record: one line, cut, and scrubbed (a server may echo the key)."""
    text = scrub(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "..."


def check_status(response) -> None:
    code = response.status_code
    if code < 400:
        return
    detail = short(response.text or response.reason_phrase or "")
    if code == 429 or code >= 500:
        raise Transient(f"HTTP {code}: {detail}", retry_after_s(response.headers.get("retry-after")))
    hint = {401: "the API key was refused: check the variable named by caption.api_key_env",
            403: "the key may not use this model or endpoint",
            404: "unknown model or wrong caption.base_url / caption.url",
            400: "the server rejected the request (model name, image input or parameters)"}.get(code, "")
    raise Systemic(f"caption service answered HTTP {code} ({detail}){'; ' + hint if hint else ''}")


class CaptionClient:
    def __init__(self, cfg, api_key: str | None):
        import httpx

        self.cfg = cfg
        self.stop = threading.Event()  # set when the task stops: no new attempt starts after it
        headers = dict(cfg.headers)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(timeout=cfg.timeout_s, headers=headers,
                                 limits=httpx.Limits(max_connections=cfg.max_workers))

    def close(self) -> None:
        self.http.close()

    def caption(self, jpegs: list[bytes], clip_id: str) -> Answer:
        import httpx
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

        backoff = wait_exponential_jitter(initial=1, max=30, jitter=1)

        def wait(state) -> float:
            exc = state.outcome.exception()
            hinted = getattr(exc, "retry_after", None)
            return min(hinted, MAX_RETRY_AFTER_S) if hinted is not None else backoff(state)

        def sleep(seconds: float) -> None:
            if self.stop.wait(seconds):  # a back-off must not hold a stopping task
                raise Stopped(clip_id)

        send = self._chat if self.cfg.provider == "openai" else self._upload
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.cfg.max_retries + 1), wait=wait, reraise=True,
                                    sleep=sleep, retry=retry_if_exception_type(Transient)):
                with attempt:
                    if self.stop.is_set():
                        raise Stopped(clip_id)
                    try:
                        return send(jpegs, clip_id)
                    except httpx.TimeoutException:
                        raise Transient(f"no answer within caption.timeout_s={self.cfg.timeout_s:g} s") from None
                    except httpx.TransportError as exc:
                        raise Transient(f"connection failed: {type(exc).__name__}: {short(str(exc))}") from None
        except Transient as exc:
            raise Transient(f"gave up after {self.cfg.max_retries + 1} attempts: {exc}") from None
        raise AssertionError("unreachable")

    # -- providers ------------------------------------------------------------------------------
    def _chat(self, jpegs: list[bytes], clip_id: str) -> Answer:
        cfg = self.cfg
        content = [{"type": "text", "text": cfg.user_prompt}] + [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(j).decode()}}
            for j in jpegs]
        body = {"model": cfg.model, "messages": [{"role": "system", "content": cfg.system_prompt},
                                                 {"role": "user", "content": content}],
                "max_tokens": cfg.max_tokens, "temperature": cfg.temperature, **cfg.extra_body}
        if "openrouter.ai" in cfg.base_url:
            body.setdefault("usage", {"include": True})  # OpenRouter then reports usage.cost
        response = self.http.post(cfg.base_url.rstrip("/") + "/chat/completions", json=body,
                                  headers={"X-Curate-Clip-Id": clip_id})
        check_status(response)
        try:
            doc = response.json()
            usage = doc.get("usage") or {}
            message = doc["choices"][0]["message"]
            text = message.get("content")
            if isinstance(text, list):  # content parts
                text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return Answer(None, f"malformed answer ({type(exc).__name__}): {short(response.text, 120)}",
                          None, None, None, None)
        cost = usage.get("cost")
        answer = Answer(text.strip() if isinstance(text, str) and text.strip() else None, None, doc.get("model"),
                        usage.get("prompt_tokens"), usage.get("completion_tokens"),
                        float(cost) if isinstance(cost, (int, float)) else None)
        if answer.caption is None:
            answer.error = "empty answer"
        return answer

    def _upload(self, jpegs: list[bytes], clip_id: str) -> Answer:
        cfg = self.cfg
        files = [(cfg.file_field, (f"frame{i}.jpg", data, "image/jpeg")) for i, data in enumerate(jpegs)]
        data = {"prompt": cfg.user_prompt, **{k: str(v) for k, v in cfg.extra_fields.items()}}
        response = self.http.post(cfg.url, files=files, data=data, headers={"X-Curate-Clip-Id": clip_id})
        check_status(response)
        try:
            value = response.json()
            for part in cfg.response_field.split("."):
                value = value[int(part)] if isinstance(value, list) else value[part]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return Answer(None, f"malformed answer ({type(exc).__name__}): {short(response.text, 120)}",
                          None, None, None, None)
        text = str(value).strip() if value is not None else ""
        return Answer(text or None, None if text else "empty answer", cfg.model, None, None, None)
