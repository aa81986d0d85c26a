"""Weight-free clip signatures for dedup: 64-bit perceptual hashes (pHash) of frames at a fixed rate.

A frame's hash is taken from its decoded luma plane as stored (rotation metadata is not applied, so a
copy that only adds or changes that metadata hashes alike), after cutting black bars off (letterbox
and pillarbox), squeezed to 32x32 (so any rescale or aspect change hashes alike) and reduced to the
signs of its 8x8 lowest DCT frequencies against their median. Re-encoding flips a few of the 64 bits,
a crop of a few percent somewhat more; unrelated frames differ in about half. Frames are taken at
`per_second` from the start of the video, by timestamp (a frame-rate change or dropped frames moves
a sample by at most one frame), and a flat frame (black, a fade) gets no hash: it says nothing about
which video it came from.

Split's decode feeds `SignatureRecorder` (stages/handoff.py), so dedup decodes nothing itself
unless split ran without a decode (kind none) or before dedup was enabled.
"""

from __future__ import annotations

from pydantic import Field

from curate.sections import Section

from .handoff import Record
from .sampling import EPS, FrameNeed

HASH_SIDE = 32  # the image the DCT is taken of
LOW = 8  # the 8x8 lowest frequencies: 64 bits
FLAT_STD = 2.0  # a frame whose 32x32 image varies less than this (0-255 levels) gets no hash
BAR_LEVEL = 32  # a border row or column whose brightest pixel is darker than this is a black bar
PROBE_SIDE = 128  # the size bars are found at


class SignatureConfig(Section):
    """What a signature is made of (its records are tagged with these settings)."""

    per_second: float = Field(default=4.0, gt=0, le=30)


def _dct_matrix():
    import numpy as np

    n = np.arange(HASH_SIDE)
    m = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * HASH_SIDE))
    m[0] /= np.sqrt(2)
    return (m * np.sqrt(2 / HASH_SIDE)).astype(np.float32)[:LOW]  # only the rows of the low frequencies


_DCT: list = []


def strip_bars(image):
    """The image without black bars on its edges (at most 40 % of a side each way)."""
    import numpy as np

    rows, cols = image.max(axis=1), image.max(axis=0)

    def span(line) -> tuple[int, int]:
        lit = np.flatnonzero(line >= BAR_LEVEL)
        if lit.size == 0:
            return 0, len(line)
        lo, hi = int(lit[0]), int(lit[-1]) + 1
        cap = int(len(line) * 0.4)
        return min(lo, cap), max(hi, len(line) - cap)

    (top, bottom), (left, right) = span(rows), span(cols)
    return image[top:bottom, left:right]


def phash(gray) -> int | None:
    """The 64-bit pHash of a gray uint8 image (any size), or None for a flat image."""
    import cv2
    import numpy as np

    if not _DCT:
        _DCT.append(_dct_matrix())
    probe = cv2.resize(gray, (PROBE_SIDE, PROBE_SIDE), interpolation=cv2.INTER_AREA)
    content = strip_bars(probe)
    if content.shape[0] < 8 or content.shape[1] < 8:
        return None
    small = cv2.resize(content, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    if float(small.std()) < FLAT_STD:
        return None
    dct = _DCT[0]
    low = (dct @ small @ dct.T).ravel()
    bits = low > np.median(low[1:])  # the DC term says only how bright, not what
    return int(np.packbits(bits).view(">u8")[0])


def frame_gray(frame):
    """A small gray image of a decoded frame, unrotated (as stored)."""
    from .pixels import convert, luma_plane

    plane = luma_plane(frame.source)
    if plane is not None:
        return plane
    return convert(frame.source, PROBE_SIDE * 2, PROBE_SIDE * 2, "gray", 0)


class SignatureConsumer:
    """One more consumer of a decode: a hash per sampled frame, with its time. Made by the dedup
    stage for split's decode (`recorder`) and for its own decode of clips split left no record of."""

    name = "signature"
    key = "dedup.signature"

    def __init__(self, cfg: SignatureConfig):
        self.cfg = cfg
        self.need = FrameNeed()  # every frame passes by; only those on the sampling grid are hashed

    def begin(self, clip: dict) -> None:
        self.start = float(clip.get("start_s") or 0.0)
        self.times: list[float] = []
        self.hashes: list[int] = []
        self.next = 0

    def feed(self, frame) -> None:
        step = 1.0 / self.cfg.per_second
        if frame.time < self.start + self.next * step - EPS:
            return
        value = phash(frame_gray(frame))
        if value is not None:
            self.times.append(round(frame.time, 4))
            self.hashes.append(value)
        while self.start + self.next * step <= frame.time + EPS:
            self.next += 1

    def end(self) -> dict:
        return {"hashes": self.hashes, "times": self.times}

    def live_record(self) -> Record:
        return Record(columns=self.end())

    def recorder(self, grid_s: float):
        return SignatureRecorder(self)


class SignatureRecorder:
    """Hashes the whole video once in split's decode; a clip gets the hashes of its time range."""

    def __init__(self, consumer: SignatureConsumer):
        self.live = SignatureConsumer(consumer.cfg)
        self.need = self.live.need

    def begin(self, clip: dict) -> None:
        self.live.begin({"start_s": 0.0})

    def feed(self, frame) -> None:
        self.live.feed(frame)

    def end(self) -> None:
        return None

    def for_clip(self, clip: dict) -> Record:
        import bisect

        start, end = float(clip.get("start_s") or 0.0), float(clip["end_s"])
        times = self.live.times
        lo, hi = bisect.bisect_left(times, start - EPS), bisect.bisect_left(times, end - EPS)
        return Record(columns={"hashes": self.live.hashes[lo:hi], "times": times[lo:hi]})
