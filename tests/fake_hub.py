"""A real HTTP server on 127.0.0.1 speaking the Hugging Face Hub endpoints that huggingface_hub's
own client uses for datasets, so fetch, `curate shards` and upload are tested through the real
client over TCP (HF_ENDPOINT points at it; HF_HUB_DISABLE_XET=1 keeps the client on the
HTTP/LFS protocol, which is what a Hub without Xet storage speaks):

- GET  /api/datasets/{repo}/tree/{rev}[/{path}]   tree listing (recursive, paginated by Link)
- GET  /api/datasets/{repo}[/revision/{rev}]      repo info
- HEAD/GET /datasets/{repo}/resolve/{rev}/{path}  file metadata (ETag, X-Repo-Commit) and content,
                                                  with Range
- POST /api/repos/create                          create a repo (409 when it exists)
- POST /api/datasets/{repo}/preupload/{rev}       upload modes
- POST /datasets/{repo}.git/info/lfs/objects/batch, PUT /lfs-upload/{oid}   LFS basic transfer
- POST /api/datasets/{repo}/commit/{rev}          NDJSON commit

Faults are scripted per request kind: `faults["resolve"] = ["500", "drop"]` answers the next two
file downloads with a 500, then with a connection closed halfway through the body.
Every request is recorded as (method, path, Range header).
"""

from __future__ import annotations

import base64
import hashlib
import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

from local_server import LocalServer


class Repo:
    def __init__(self, private: bool = False):
        self.private = private
        self.files: dict[str, bytes] = {}
        self.lfs: set[str] = set()  # paths stored through LFS
        self.commits: list[dict] = []

    @property
    def sha(self) -> str:
        return hashlib.sha1(json.dumps(len(self.commits)).encode()).hexdigest()


class FakeHub(LocalServer):
    PAGE = 50  # tree entries per page: listings of more files are paginated as the Hub does

    def __init__(self):
        super().__init__()
        self.repos: dict[str, Repo] = {}
        self.pending_lfs: dict[str, bytes] = {}  # LFS objects uploaded, by sha256
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str, str | None]] = []

    # -- test set-up ---------------------------------------------------------------------------
    def add_dataset(self, repo_id: str, files: dict[str, bytes]) -> None:
        repo = self.repos.setdefault(repo_id, Repo())
        repo.files.update(files)
        repo.lfs.update(p for p in files if not p.endswith((".txt", ".md", ".json", ".jsonl")))
        repo.commits.append({"summary": "initial", "files": sorted(files)})

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and fragment in p)

    # -- protocol ------------------------------------------------------------------------------
    def fault(self, kind: str) -> str | None:
        with self.lock:
            queue = self.faults.get(kind)
            return queue.pop(0) if queue else None

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path, query = unquote(url.path), parse_qs(url.query)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((method, path, h.headers.get("Range")))
        parts = path.strip("/").split("/")
        try:
            if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
                repo_id = "/".join(parts[2:4])
                rest = parts[4:]
                if rest[:1] == ["tree"]:
                    return self.tree(h, repo_id, rest[1], "/".join(rest[2:]), query)
                if rest[:1] == ["preupload"]:
                    return self.preupload(h, repo_id, json.loads(body))
                if rest[:1] == ["commit"]:
                    return self.commit(h, repo_id, body)
                if not rest or rest[:1] == ["revision"]:
                    return self.info(h, repo_id)
            if parts[:2] == ["api", "validate-yaml"]:
                return self.validate_yaml(h, json.loads(body))
            if parts[:3] == ["api", "repos", "create"]:
                return self.create(h, json.loads(body))
            if parts[:1] == ["datasets"] and len(parts) >= 5 and parts[3] == "resolve":
                return self.resolve(h, method, "/".join(parts[1:3]), "/".join(parts[5:]))
            if parts[:1] == ["datasets"] and path.endswith(".git/info/lfs/objects/batch"):
                return self.lfs_batch(h, json.loads(body))
            if parts[:1] == ["lfs-upload"] and method == "PUT":
                return self.lfs_put(h, parts[1], body)
        except KeyError:
            return self.reply(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        self.reply(h, 404, {"error": f"no route {method} {path}"})

    def repo(self, repo_id: str) -> Repo:
        return self.repos[repo_id]

    def tree(self, h, repo_id: str, revision: str, prefix: str, query) -> None:
        repo = self.repo(repo_id)
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for path in sorted(repo.files):
            if prefix and not path.startswith(prefix.rstrip("/") + "/"):
                continue
            rel = path[len(prefix.rstrip("/")) + 1:] if prefix else path
            if "/" in rel and not recursive:
                folders.add(path[: len(path) - len(rel)] + rel.split("/")[0])
                continue
            if recursive:  # the Hub lists every folder on the way too (HfFileSystem.find relies on it)
                pieces = rel.split("/")[:-1]
                folders.update(path[: len(path) - len(rel)] + "/".join(pieces[:i]) for i in range(1, len(pieces) + 1))
            data = repo.files[path]
            entry = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
            if path in repo.lfs:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            entries.append(entry)
        entries = [{"type": "directory", "path": f, "size": 0, "oid": "0" * 40} for f in sorted(folders)] + entries
        if prefix and not entries:
            return self.reply(h, 404, {"error": f"{prefix} does not exist"}, {"X-Error-Code": "EntryNotFound"})
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start:start + self.PAGE]
        headers = {}
        if start + self.PAGE < len(entries):
            link = f"{self.url}{urlparse(h.path).path}?recursive={str(recursive).lower()}&cursor={start + self.PAGE}"
            headers["Link"] = f'<{link}>; rel="next"'
        self.reply(h, 200, page, headers)

    def info(self, h, repo_id: str) -> None:
        repo = self.repo(repo_id)
        self.reply(h, 200, {"id": repo_id, "sha": repo.sha, "private": repo.private,
                            "siblings": [{"rfilename": p} for p in sorted(repo.files)]})

    def resolve(self, h, method: str, repo_id: str, path: str) -> None:
        repo = self.repo(repo_id)
        if path not in repo.files:
            return self.reply(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        fault = self.fault("resolve") if method == "GET" else None
        if fault == "500":
            return self.reply(h, 500, {"error": "internal error (scripted)"})
        data = repo.files[path]
        etag = hashlib.sha256(data).hexdigest() if path in repo.lfs else hashlib.sha1(data).hexdigest()
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        start = 0
        ranged = h.headers.get("Range")
        if ranged and ranged.startswith("bytes="):
            start = int(ranged[6:].split("-")[0] or 0)
        body = data[start:]
        h.send_response(206 if ranged else 200)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(body)))
        if ranged:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if method == "HEAD":
            return
        if fault == "drop":  # half the body, then the connection goes away
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        h.wfile.write(body)

    SIZES = {"n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B",
             "10B<n<100B", "100B<n<1T", "n>1T"}

    def validate_yaml(self, h, payload: dict) -> None:
        """POST /api/validate-yaml (the client sends a README.md's text before committing it): the header
        must parse, and the keys the Hub types (configs, size_categories, licence) must have its shapes."""
        import yaml

        content = payload.get("content", "")
        errors = []
        if content.startswith("---\n"):
            try:
                meta = yaml.safe_load(content[4:content.index("\n---", 4)]) or {}
            except (yaml.YAMLError, ValueError) as exc:
                return self.reply(h, 400, {"error": f"Invalid YAML in README.md: {exc}"})
            if not isinstance(meta, dict):
                errors.append("metadata is not a mapping")
            else:
                if not set(meta.get("size_categories") or []) <= self.SIZES:
                    errors.append(f"size_categories {meta['size_categories']} is not one of the Hub's")
                if "license" in meta and not isinstance(meta["license"], str):
                    errors.append("license must be a string")
                for config in meta.get("configs") or []:
                    if not isinstance(config.get("config_name"), str) or "data_files" not in config:
                        errors.append(f"config {config} needs config_name and data_files")
        if errors:
            return self.reply(h, 400, {"error": "; ".join(errors)})
        self.reply(h, 200, {"errors": [], "warnings": []})
        self.validated = getattr(self, "validated", 0) + 1

    def create(self, h, payload: dict) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_id in self.repos:
            return self.reply(h, 409, {"error": "You already created this dataset repo",
                                       "url": f"{self.url}/datasets/{repo_id}"})
        self.repos[repo_id] = Repo(private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self.reply(h, 200, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id})

    def preupload(self, h, repo_id: str, payload: dict) -> None:
        repo = self.repo(repo_id)
        files = []
        for f in payload["files"]:
            lfs = not f["path"].endswith((".txt", ".md", ".json", ".jsonl")) and f["size"] > 0
            existing = repo.files.get(f["path"])
            oid = None
            if existing is not None:
                oid = hashlib.sha256(existing).hexdigest() if lfs else git_blob_sha(existing)
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        self.reply(h, 200, {"files": files, "commitOid": repo.sha})

    def lfs_batch(self, h, payload: dict) -> None:
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.pending_lfs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self.reply(h, 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, h, oid: str, body: bytes) -> None:
        if self.fault("lfs") == "500":
            return self.reply(h, 500, {"error": "storage unavailable (scripted)"})
        if hashlib.sha256(body).hexdigest() != oid:
            return self.reply(h, 400, {"error": "sha256 mismatch"})
        self.pending_lfs[oid] = body
        self.reply(h, 200, {})

    def commit(self, h, repo_id: str, body: bytes) -> None:
        repo = self.repo(repo_id)
        if self.fault("commit") == "500":
            return self.reply(h, 500, {"error": "commit failed (scripted)"})
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        changed = []
        for item in lines:
            value = item["value"]
            if item["key"] == "file":
                repo.files[value["path"]] = base64.b64decode(value["content"])
                repo.lfs.discard(value["path"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.pending_lfs:
                    return self.reply(h, 422, {"error": f"LFS object {value['oid']} was never uploaded"})
                repo.files[value["path"]] = self.pending_lfs[value["oid"]]
                repo.lfs.add(value["path"])
            else:
                continue
            changed.append(value["path"])
        repo.commits.append({"summary": header["summary"], "files": changed})
        self.reply(h, 200, {"commitUrl": f"{self.url}/datasets/{repo_id}/commit/{repo.sha}", "commitOid": repo.sha})



def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
