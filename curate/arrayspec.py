"""Slurm array specs: "0-999", "3,17,40-45", "0-999%50" <-> sorted index lists."""

from __future__ import annotations

import re

from .errors import CurateError

_PART = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def parse_spec(spec: str, num_parts: int | None = None) -> tuple[list[int], int | None]:
    """Return (sorted unique indices, throttle or None).

    With `num_parts`, an index outside 0..num_parts-1 is refused before any range is expanded, so a
    spec like 0-300000000 costs nothing (no list of 300 million indices).
    """
    text = spec.replace(" ", "")
    throttle = None
    if "%" in text:
        text, _, limit = text.partition("%")
        if not limit.isdigit() or int(limit) < 1:
            raise CurateError(f"array spec {spec!r}: the throttle after % must be a positive number")
        throttle = int(limit)
    ranges: list[range] = []
    for part in filter(None, text.split(",")):
        match = _PART.match(part)
        if not match:
            raise CurateError(f"array spec {spec!r}: {part!r} is not N, N-M or N-M:STEP")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else start
        step = int(match.group(3) or 1)
        if end < start or step < 1:
            raise CurateError(f"array spec {spec!r}: {part!r} is an empty range")
        if num_parts is not None and end >= num_parts:
            raise CurateError(f"array spec {spec!r}: index {end} is outside this run's manifest (0-{num_parts - 1})")
        ranges.append(range(start, end + 1, step))
    if not ranges:
        raise CurateError(f"array spec {spec!r} names no index")
    return sorted({i for r in ranges for i in r}), throttle


def compact(indices: list[int]) -> str:
    """[3, 17, 40, 41, 42] -> "3,17,40-42"."""
    values = sorted(set(indices))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)
