"""A threaded HTTP server on 127.0.0.1 for the test doubles of remote services (tests/fake_llm.py,
tests/fake_hub.py): a subclass implements `handle(handler, method)`; the real client code talks to
it over TCP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalServer:
    methods = ("GET", "HEAD", "POST", "PUT")

    def __init__(self):
        self.lock = threading.Lock()
        server = self
        routes = {f"do_{m}": lambda h, m=m: server.handle(h, m) for m in self.methods}
        handler = type("Handler", (BaseHTTPRequestHandler,), {
            "protocol_version": "HTTP/1.1", "log_message": lambda *args: None, **routes})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    @staticmethod
    def reply(h, code: int, doc, headers=None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(doc).encode()
        headers = dict(headers or {})
        h.send_response(code)
        h.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        h.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
