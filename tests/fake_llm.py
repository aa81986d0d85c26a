"""A real HTTP server on 127.0.0.1 speaking OpenAI chat completions (with image content parts) and a
multipart upload API, for the caption tests: the stage's real client talks to it over TCP.

`script` is a list of behaviours used one per request, in arrival order ("ok" once it runs out):
ok, 429 (with Retry-After: 1), 500, hang (answers after `hang_s`), malformed (200, not JSON), 401,
echo (200, not JSON, echoing the request's Authorization header as a broken proxy might).
Every request is recorded: clip id, time of arrival, number of images, the Authorization header,
and `answered` once a 200 answer (one the client pays for) has been sent.
"""

from __future__ import annotations

import base64
import json
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler

from local_server import LocalServer


class FakeCaptionServer(LocalServer):
    methods = ("POST",)

    def __init__(self, script=(), latency_s=0.0, hang_s=3.0, cost=0.001):
        super().__init__()
        self.script = list(script)
        self.latency_s, self.hang_s, self.cost = latency_s, hang_s, cost
        self.requests: list[dict] = []
        self.inflight = self.max_inflight = 0

    def clip_ids(self) -> list[str]:
        with self.lock:
            return [r["clip"] for r in self.requests]

    def answered(self) -> list[str]:
        """The clip of every 200 answer sent, in order: what the client was billed for."""
        with self.lock:
            return [r["clip"] for r in self.requests if r.get("answered")]

    # -- one request -------------------------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, method: str = "POST") -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self.lock:
            behaviour = self.script.pop(0) if self.script else "ok"
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            record = {"clip": h.headers.get("X-Curate-Clip-Id"), "at": time.time(), "behaviour": behaviour,
                      "auth": h.headers.get("Authorization"), "path": h.path}
            images = self.images(h, body, record)
            record["images"] = images
            with self.lock:
                self.requests.append(record)
            time.sleep(self.hang_s if behaviour == "hang" else self.latency_s)
            if behaviour == "429":
                return self.reply(h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"})
            if behaviour == "500":
                return self.reply(h, 500, {"error": {"message": "upstream exploded"}})
            if behaviour == "401":
                return self.reply(h, 401, {"error": {"message": "No auth credentials found"}})
            caption = f"caption of {record['clip']} from {images} frames"
            if behaviour == "malformed":
                self.reply(h, 200, None, raw=b'{"choices": [ this is not json')
            elif behaviour == "echo":
                self.reply(h, 200, None, raw=f"bad gateway; you sent Authorization: {record['auth']}".encode())
            elif h.path.endswith("/upload"):
                self.reply(h, 200, {"result": {"caption": caption}})
            else:
                self.reply(h, 200, {"id": "cmpl-1", "model": record.get("model", "test-model"),
                                    "choices": [{"index": 0, "message": {"role": "assistant", "content": caption}}],
                                    "usage": {"prompt_tokens": 100 * images, "completion_tokens": 12,
                                              "cost": self.cost}})
            with self.lock:
                record["answered"] = True
        finally:
            with self.lock:
                self.inflight -= 1

    @staticmethod
    def images(h, body: bytes, record: dict) -> int:
        """Count the JPEG frames of a chat request (data URLs) or an upload (multipart files)."""
        if h.path.endswith("/upload"):
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + h.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
            parts = list(message.iter_parts())
            record["fields"] = {p.get_param("name", header="content-disposition"): p.get_content()
                                for p in parts if p.get_filename() is None}
            files = [p.get_payload(decode=True) for p in parts if p.get_filename()]
            assert all(f.startswith(b"\xff\xd8") for f in files), "upload frames must be JPEG"
            return len(files)
        doc = json.loads(body)
        record["model"] = doc["model"]
        (user,) = [m for m in doc["messages"] if m["role"] == "user"]
        urls = [part["image_url"]["url"] for part in user["content"] if part["type"] == "image_url"]
        assert all(u.startswith("data:image/jpeg;base64,") for u in urls)
        assert all(base64.b64decode(u.split(",", 1)[1]).startswith(b"\xff\xd8") for u in urls)
        return len(urls)

