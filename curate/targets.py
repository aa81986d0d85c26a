"""Where an upload goes: a directory or a Hugging Face dataset, behind one small interface
(send files that are not already there, list a folder, read a file back)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from .errors import CurateError


def _digest(path: Path, digest) -> str:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return _digest(path, hashlib.sha256())


def git_blob_sha(path: Path) -> str:
    """The git object id of a file: what the Hub lists for files not stored through LFS."""
    return _digest(path, hashlib.sha1(b"blob %d\0" % path.stat().st_size))


def chunks(files: list[tuple[str, Path]], limit_bytes: float) -> list[list[tuple[str, Path]]]:
    """Files in commits of about limit_bytes each (a bigger file is a commit of its own)."""
    out: list[list[tuple[str, Path]]] = [[]]
    size = 0
    for rel, path in files:
        if out[-1] and size + path.stat().st_size > limit_bytes:
            out.append([])
            size = 0
        out[-1].append((rel, path))
        size += path.stat().st_size
    return [c for c in out if c]


class DirTarget:
    def __init__(self, root: Path):
        self.root = root
        self.name = str(root)

    def send(self, files: list[tuple[str, Path]], label: str, log) -> tuple[int, int]:
        from .publish import confined, copy_atomic

        sent = skipped = 0
        for rel, path in files:
            dest = confined(self.root, rel)  # publish built rel from safe parts; this holds if it ever did not
            if dest.is_file() and dest.stat().st_size == path.stat().st_size and sha256_of(dest) == sha256_of(path):
                skipped += 1
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            copy_atomic(path, dest)
            sent += 1
        return sent, skipped

    def names(self, folder: str) -> list[str]:
        base = self.root / folder
        return sorted(p.relative_to(self.root).as_posix() for p in base.glob("*")
                      if p.is_file() and not p.name.startswith(".")) if base.is_dir() else []

    def local(self, rel: str, scratch: Path) -> Path:
        return self.root / rel


class RepoTarget:
    def __init__(self, repo: str, private: bool, chunk_bytes: float):
        from huggingface_hub import HfApi

        from .hub import REPO_TYPE, explain, retried

        self.api, self.name, self.chunk_bytes = HfApi(), repo, chunk_bytes
        try:
            retried(self.api.create_repo, repo, repo_type=REPO_TYPE, private=private, exist_ok=True)
        except Exception as exc:
            raise explain(exc, f"creating dataset {repo} for upload") from None

    def send(self, files: list[tuple[str, Path]], label: str, log) -> tuple[int, int]:
        from huggingface_hub import CommitOperationAdd

        from .hub import REPO_TYPE, explain, list_files, retried
        from .publish import check_relpath

        for rel, _ in files:  # a path in the repo must not climb out (publish never gives one that does)
            check_relpath(rel)
        remote = {f.path: f for f in list_files(self.name)}  # says itself what failed
        todo = []
        for rel, path in files:
            there = remote.get(rel)
            if there and there.size == path.stat().st_size and (
                    there.sha256 == sha256_of(path) if there.sha256 else there.blob_id == git_blob_sha(path)):
                continue
            todo.append((rel, path))
        batches = chunks(todo, self.chunk_bytes)
        for n, batch in enumerate(batches, 1):
            operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in batch]
            message = f"curate: {label} ({n}/{len(batches)}, {len(batch)} files)"
            try:
                retried(self.api.create_commit, self.name, operations, commit_message=message, repo_type=REPO_TYPE)
            except Exception as exc:  # the commits before this one stay; a rerun sends only the rest
                raise explain(exc, f"commit {n}/{len(batches)} to {self.name}") from None
            log(f"{label} commit {n}/{len(batches)}: {len(batch)} files")
        return len(todo), len(files) - len(todo)

    def names(self, folder: str) -> list[str]:
        from .hub import list_files

        prefix = folder.rstrip("/") + "/"
        return sorted(f.path for f in list_files(self.name) if f.path.startswith(prefix)
                      and "/" not in f.path[len(prefix):])

    def local(self, rel: str, scratch: Path) -> Path:
        from .hub import download

        try:
            return download(self.name, "main", rel, scratch)
        except CurateError:
            raise
        except Exception as exc:  # pragma: no cover - download() explains hub errors itself
            raise CurateError(f"reading {rel} back from {self.name}: {exc}") from None


def scratch_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="root-", dir=root))
