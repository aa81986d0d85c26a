"""Near-duplicate clips from their frame hashes, without comparing all pairs.

Every clip is a list of 64-bit frame hashes (stages/signatures.py). Candidates come from banding
(locality-sensitive hashing): each frame hash is cut into `bands` windows of `band_bits` bits, and
two clips are candidates when one frame of each has the same value in one window and differs in at
most `max_bits` bits over its whole hash. Each band is one sort of (window value, frame) keys, so
memory stays linear in the number of frames. Candidates are then verified clip against clip:

    for each frame of the clip with fewer hashes, its nearest frame in the other clip (Hamming);
    the pair is a duplicate when the median of those distances is <= max_bits and the other
    clip covers its time span (the short clip lies inside the long one, at one time offset).

Groups are the connected components of the verified pairs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

MAX_FRAMES = 48  # frames per clip compared in verification (spread evenly over a longer clip)
BATCH = 2048  # pairs verified at once
MAX_RUN = 64  # in a window value shared by more frames, each is paired with its next MAX_RUN only


@dataclass
class Signatures:
    """Frame hashes of many clips, flat: clip c owns hashes[offsets[c]:offsets[c + 1]] (times alike)."""

    hashes: np.ndarray  # uint64
    times: np.ndarray  # float32 seconds from the clip's start
    offsets: np.ndarray  # int64, len = clips + 1

    @classmethod
    def from_lists(cls, hashes: list[list[int]], times: list[list[float]] | None = None) -> Signatures:
        counts = np.array([len(h) for h in hashes], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        flat = np.fromiter((v for h in hashes for v in h), dtype=np.uint64, count=int(offsets[-1]))
        if times is None:
            stamps = np.zeros(len(flat), dtype=np.float32)
        else:
            stamps = np.fromiter((t for ts in times for t in ts), dtype=np.float32, count=int(offsets[-1]))
        return cls(flat, stamps, offsets)

    @property
    def clips(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def auto_band_bits(frames: int) -> int:
    """Window width for this many frames: random frames then share a window value about once per
    16 frames per band (wider windows on more frames keep the candidate count linear)."""
    return int(np.clip(np.ceil(np.log2(max(frames, 2))) + 4, 12, 32))


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


def candidate_pairs(sig: Signatures, max_bits: int, bands: int = 8, band_bits: int | None = None,
                    stats: dict | None = None) -> np.ndarray:
    """Clip pairs (a < b, int64 [n, 2]) sharing a window value on two frames within max_bits."""
    n = len(sig.hashes)
    stats = stats if stats is not None else {}
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    bits = band_bits or auto_band_bits(n)
    stats["band_bits"], stats["bands"] = bits, bands
    owner = np.repeat(np.arange(sig.clips, dtype=np.int32 if sig.clips < 2**31 else np.int64), sig.counts)
    entry_bits = max(1, int(n - 1).bit_length())
    if bits + entry_bits > 64:
        raise ValueError(f"too many frames ({n}) for {bits}-bit bands")
    mask = np.uint64((1 << bits) - 1)
    found: list[np.ndarray] = []
    low = np.uint64(entry_bits)
    for band in range(bands):
        shift = np.uint64((band * 64 // bands) % 64)
        keys = (sig.hashes >> shift) | (sig.hashes << np.uint64((64 - int(shift)) % 64)) if shift else sig.hashes.copy()
        keys &= mask
        keys <<= low
        keys |= np.arange(n, dtype=np.uint64)  # (window value, frame): one sort groups equal values
        keys.sort()
        index = (keys & np.uint64((1 << entry_bits) - 1)).astype(np.int32 if n < 2**31 else np.int64)
        keys >>= low
        # One entry per (window value, clip): a clip's frames often share a value, and pairs within a
        # clip are never wanted (frames of one clip are sorted together, as their indices are).
        first = np.ones(len(keys), dtype=bool)
        first[1:] = (keys[1:] != keys[:-1]) | (owner[index[1:]] != owner[index[:-1]])
        keys, index = keys[first], index[first]
        del first
        # Positions whose window value equals the next one's: the start of every run longer than 1.
        same = keys[1:] == keys[:-1]
        del keys
        pos = np.flatnonzero(same)
        run_end = _run_ends(same, len(index))
        del same
        for k in range(1, MAX_RUN + 1):
            if pos.size == 0:
                break
            pos = pos[pos + k < run_end[pos]]
            a, b = index[pos], index[pos + k]
            keep = (owner[a] != owner[b]) & (_popcount(sig.hashes[a] ^ sig.hashes[b]) <= max_bits)
            ca, cb = owner[a[keep]].astype(np.int64), owner[b[keep]].astype(np.int64)
            found.append(np.minimum(ca, cb) * sig.clips + np.maximum(ca, cb))
    packed = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    stats["candidates"] = int(packed.size)
    return np.stack([packed // sig.clips, packed % sig.clips], axis=1)


def _run_ends(same: np.ndarray, n: int) -> np.ndarray:
    """For every position of a sorted array, the (exclusive) end of its run of equal values."""
    starts = np.concatenate([[0], np.flatnonzero(~same) + 1]).astype(np.int64)
    ends = np.concatenate([starts[1:], [n]])
    return np.repeat(ends.astype(np.int32 if n < 2**31 else np.int64), ends - starts)


def _padded(sig: Signatures, clips: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes and times of these clips as [len, width] arrays and their validity mask; a clip with
    more frames gives `width` spread evenly over it."""
    counts = sig.counts[clips]
    if len(sig.hashes) == 0:  # no frame hash at all (dedup.near off): nothing is valid
        shape = (len(clips), width)
        return np.zeros(shape, dtype=np.uint64), np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=bool)
    taken = np.minimum(counts, width)
    step = np.maximum(counts / np.maximum(taken, 1), 1.0)
    cols = np.arange(width)
    valid = cols[None, :] < taken[:, None]
    picks = sig.offsets[clips][:, None] + np.where(valid, (cols[None, :] * step[:, None]).astype(np.int64), 0)
    picks = np.minimum(picks, max(len(sig.hashes) - 1, 0))
    return sig.hashes[picks], sig.times[picks], valid


def verify(sig: Signatures, pairs: np.ndarray, max_bits: int, min_cover: float = 0.8,
           tolerance_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(is duplicate, distance) of each pair: the median nearest-frame distance of its shorter clip,
    taken at the one time offset that best aligns it inside the longer clip."""
    ok = np.zeros(len(pairs), dtype=bool)
    dist = np.full(len(pairs), 64.0, dtype=np.float32)
    for lo in range(0, len(pairs), BATCH):
        a, b = pairs[lo:lo + BATCH, 0], pairs[lo:lo + BATCH, 1]
        short_first = sig.counts[a] <= sig.counts[b]
        s, t = np.where(short_first, a, b), np.where(short_first, b, a)
        hs, ts, vs = _padded(sig, s, MAX_FRAMES)
        ht, tt, vt = _padded(sig, t, MAX_FRAMES)
        d = _popcount(hs[:, :, None] ^ ht[:, None, :]).astype(np.int16)
        d[~(vs[:, :, None] & vt[:, None, :])] = 64
        best = d.argmin(axis=2)
        nearest = np.take_along_axis(d, best[:, :, None], axis=2)[:, :, 0].astype(np.float32)
        # The time offset of the short clip inside the long one: the median offset of its frames' matches.
        offset = np.take_along_axis(tt, best, axis=1) - ts
        matched = vs & (nearest <= max_bits)
        off = _masked_median(offset, matched)
        # Distances at that offset: each short frame against the long clip's frames near its place.
        near_place = np.abs(tt[:, None, :] - (ts + off[:, None])[:, :, None]) <= tolerance_s
        aligned = np.where(near_place & vt[:, None, :], d, 64).min(axis=2).astype(np.float32)
        covered = (near_place & vt[:, None, :]).any(axis=2) & vs
        cover = covered.sum(axis=1) / np.maximum(vs.sum(axis=1), 1)
        median = _masked_median(aligned, vs)
        dist[lo:lo + BATCH] = median
        ok[lo:lo + BATCH] = (median <= max_bits) & (cover >= min_cover) & (vs.sum(axis=1) > 0)
    return ok, dist


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        out = np.nanmedian(np.where(mask, values, np.nan), axis=1)
    return np.nan_to_num(out, nan=64.0)


def components(count: int, pairs: np.ndarray) -> np.ndarray:
    """The connected component of each of `count` nodes (its smallest member) under these edges."""
    label = np.arange(count, dtype=np.int64)
    if len(pairs) == 0:
        return label
    a, b = pairs[:, 0], pairs[:, 1]
    while True:
        low = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        while True:  # pointer jumping: every node points at its label's label
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        if np.array_equal(label, before):
            return label


def near_duplicates(sig: Signatures, max_bits: int, bands: int = 8, band_bits: int | None = None,
                    stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The verified duplicate pairs [n, 2] and their distances."""
    stats = stats if stats is not None else {}
    started = time.perf_counter()
    pairs = candidate_pairs(sig, max_bits, bands, band_bits, stats)
    stats["candidates_s"] = round(time.perf_counter() - started, 3)
    ok, dist = verify(sig, pairs, max_bits)
    stats["verify_s"] = round(time.perf_counter() - started - stats["candidates_s"], 3)
    stats["near_pairs"] = int(ok.sum())
    return pairs[ok], dist[ok]
