"""Stable ids and fingerprints: the same input gives the same hash on every node and run."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stable_id(*parts: str) -> str:
    """A video id that stays the same for the same source across rebuilds."""
    # surrogatepass: a name that is not valid UTF-8 (its bytes kept as surrogates) still gets its own id
    return hashlib.sha1("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def printable(name: str) -> str:
    """`name` as valid UTF-8 text: the bytes of a non-UTF-8 file or member name shown as \\xNN escapes."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no byte decoded to
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes (byte-identical copies share it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
