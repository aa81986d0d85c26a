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
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:16]
