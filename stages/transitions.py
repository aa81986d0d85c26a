"""Gradual transitions, fades and dissolves, from split's own decode.

A hard-cut detector (PySceneDetect's AdaptiveDetector) sees a fade or a dissolve as a slow change
and cuts nowhere, or once in its middle: the clip on either side then holds blended frames of two
shots. `TransitionFinder` takes the 32x18 grey thumbnails the flash guard already has (one
conversion per frame for both) and finds, at the end of the video:

- fades: a run of flat frames (black or white: low contrast at an extreme level) with the frames
  that scale towards that level on either side (fade out, fade in);
- dissolves: frames that are a blend (1 - a) A + a B of the frames `k` before and after them, with
  `a` in the middle of its range, where those two frames differ as two shots do: a static shot
  differs too little, a hard cut is no blend (`a` is 0 or 1) and a pan fits a blend badly.

A transition is (first, end, kind) with `end` exclusive. kind transnetv2 uses the model's own
many-hot transition output instead (`transnet_transitions`).
"""

from __future__ import annotations

from .pixels import Frame
from .sampling import FrameNeed

BLACK, WHITE = 24.0, 231.0  # mean luma (0-255) at or past which a flat frame is black / white
FLAT_STD = 8.0  # a black or white frame has less contrast than this
RAMP_STEP = 0.015  # a fade frame is this much (relative) farther from the flat level than the next
MAX_RAMP = 90  # frames a fade may take on either side of its flat frames
MIN_RAMP = 3  # a fade scales over at least this many frames (fewer: a flash or a cut to black)
DISSOLVE_K = (6, 12)  # frames before and after a frame that a dissolve blends between (short, long ones)
MIN_JUMP = 14.0  # RMS luma difference (0-255) of the two ends: as much as two shots differ ...
MIN_COARSE_JUMP = 20.0  # ... also in 6x8 block means (camera shake on a sign: <= 15.5)
MAX_RESIDUAL = 0.3  # blend misfit relative to the jump
MIN_CORE = 3  # frames in a row that must fit the blend
CHUNK, OVERLAP = 4096, 160  # dissolves are looked for in overlapping chunks: memory stays flat on long videos


def level_of(mean: float, std: float) -> float | None:
    if std < FLAT_STD and mean <= BLACK:
        return 0.0
    if std < FLAT_STD and mean >= WHITE:
        return 255.0
    return None


def runs(flags) -> list[tuple[int, int]]:
    """[first, end) of every run of true values."""
    out, start = [], None
    for i, flag in enumerate(list(flags) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i))
            start = None
    return out


def ramp(distance: list[float], first: int, end: int) -> tuple[int, int]:
    """Grow the flat run [first, end) by the frames that scale towards its level: before it (fade
    out) each frame is farther from the level than the next, after it (fade in) than the one before.
    One repeated frame (a frame-rate conversion) does not end a ramp."""
    n = len(distance)

    def farther(i: int, j: int) -> bool:
        return 0 <= i < n and distance[i] > distance[j] * (1 + RAMP_STEP) + 0.5

    start = first
    while first - start < MAX_RAMP:
        if farther(start - 1, start):
            start -= 1
        elif farther(start - 2, start) and farther(start - 2, start - 1):
            start -= 2
        else:
            break
    stop = end
    while stop - end < MAX_RAMP:
        if farther(stop, stop - 1):
            stop += 1
        elif farther(stop + 1, stop - 1) and farther(stop + 1, stop):
            stop += 2
        else:
            break
    return start, stop


def find_fades(thumbs) -> list[tuple[int, int, str]]:
    import numpy as np

    n = len(thumbs)
    flat = [level_of(float(t.mean()), float(t.std())) for t in thumbs]
    fades, distances = [], {}
    for first, end in runs([f is not None for f in flat]):
        level = flat[first]
        if any(flat[i] != level for i in range(first, end)):
            continue  # black straight into white: leave it to the cut detector
        if level not in distances:  # RMS distance of every frame to the flat level (in chunks: long videos)
            distances[level] = [float(d) for i in range(0, n, CHUNK)
                                for d in np.sqrt(((thumbs[i:i + CHUNK].astype(np.float32) - level) ** 2)
                                                 .reshape(-1, thumbs[0].size).mean(axis=1))]
        start, stop = ramp(distances[level], first, end)
        # the frame where a ramp stopped growing is the shot's own (clean) frame
        start, stop = (start + 1 if start > 0 else 0), (stop - 1 if stop < n else n)
        if max(first - start, stop - end) < MIN_RAMP:
            continue  # a flash or a cut to black, not a fade
        fades.append((start, stop, "fade"))
    return merge(fades)


def blend_fit(thumbs, k: int):
    """For every frame t in [k, n-k): (alpha, residual, jump) of t as a blend of t-k and t+k."""
    import numpy as np

    x = thumbs.reshape(len(thumbs), -1)
    before, frame, after = x[:-2 * k], x[k:-k], x[2 * k:]
    delta = after - before
    energy = (delta ** 2).sum(axis=1) + 1e-6
    alpha = ((frame - before) * delta).sum(axis=1) / energy
    misfit = frame - before - alpha[:, None] * delta
    jump = np.sqrt(energy / x.shape[1])
    residual = np.sqrt((misfit ** 2).mean(axis=1)) / jump
    return alpha, residual, jump


def find_dissolves(thumbs, cut_steps: float = 0.55, spans: tuple[int, ...] = DISSOLVE_K) -> list[tuple[int, int, str]]:
    import cv2
    import numpy as np

    n = len(thumbs)
    x = thumbs.reshape(n, -1)
    # 6x8 block means: a small shift (camera shake over high-contrast edges) blends like a dissolve
    # at 32x18 but barely changes these; two different shots do
    coarse = np.stack([cv2.resize(t, (8, 6), interpolation=cv2.INTER_AREA) for t in thumbs]).reshape(n, -1)
    step = np.sqrt(((x[1:] - x[:-1]) ** 2).mean(axis=1))  # step[i]: frame i -> i+1
    found = []
    for k in spans:
        if n < 2 * k + MIN_CORE:
            continue
        alpha, residual, jump = blend_fit(thumbs, k)
        coarse_jump = np.sqrt(((coarse[2 * k:] - coarse[:-2 * k]) ** 2).mean(axis=1))
        core = np.zeros(n, dtype=bool)
        for j in np.flatnonzero((jump >= MIN_JUMP) & (coarse_jump >= MIN_COARSE_JUMP) & (residual <= MAX_RESIDUAL)
                                & (alpha >= 0.2) & (alpha <= 0.8)):
            t = j + k
            core[t] = step[t - k:t + k].max() <= cut_steps * jump[j]  # else one step holds it: a hard cut
        for first, end in runs(core):
            if end - first < MIN_CORE:
                continue
            span = blend_span(x, first, end, k)
            if span:
                found.append((*span, "dissolve"))
    return merge(found)


def blend_span(x, first: int, end: int, k: int) -> tuple[int, int] | None:
    """The frames of a dissolve around its core [first, end): project the frames from a frame of one
    shot to a frame of the other onto their difference (progress 0 to 1), and fit the ramp a blend
    makes, 0 up to its start, rising straight, 1 from its end (least absolute error); the shots'
    own motion around it is noise to the fit, not part of the blend."""
    import numpy as np

    n = len(x)
    a, b = max(0, first - k), min(n - 1, end - 1 + k)
    delta = x[b] - x[a]
    progress = ((x[a:b + 1] - x[a]) @ delta) / max(float(delta @ delta), 1e-6)
    t = np.arange(len(progress))
    best, span = np.inf, None
    for s in range(0, first - a + 1):
        for e in range(end - a, len(progress)):
            error = np.abs(np.clip((t - s) / max(e - s, 1), 0, 1) - progress).sum()
            if error < best:
                best, span = error, (a + s + 1, a + e)
    return span if span and span[1] > span[0] else None


def merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping or touching spans as one (a fade wins over a dissolve: it is the surer finding)."""
    out: list[list] = []
    for first, end, kind in sorted(spans):
        if out and first <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
            if kind == "fade":
                out[-1][2] = "fade"
        else:
            out.append([first, end, kind])
    return [tuple(s) for s in out]


class TransitionFinder:
    """A consumer of split's decode: grey thumbnails of every frame; fades and dissolves at `end`."""

    need = FrameNeed(width=32, height=18, color="gray")  # the flash guard's thumbnails: converted once

    def __init__(self, dissolves: bool = True):
        self.dissolves = dissolves

    def begin(self, clip: dict) -> None:
        self.thumbs: list = []

    def feed(self, frame: Frame) -> None:
        self.thumbs.append(frame.image(self.need))

    def end(self) -> list[tuple[int, int, str]]:
        import numpy as np

        if not self.thumbs:
            return []
        thumbs = np.stack(self.thumbs)
        fades = find_fades(thumbs)
        dissolves = []
        for start in range(0, len(thumbs), CHUNK - OVERLAP) if self.dissolves else ():
            part = thumbs[start:start + CHUNK].astype(np.float32)
            dissolves += [(a + start, b + start, kind) for a, b, kind in find_dissolves(part)]
            if start + CHUNK >= len(thumbs):
                break
        dissolves = merge(dissolves)
        # a dissolve that touches a fade is the fade's own ramp
        dissolves = [d for d in dissolves if not any(d[0] <= f[1] and f[0] <= d[1] for f in fades)]
        return merge(fades + dissolves)


def transnet_transitions(many_hot, thumbs, threshold: float, min_frames: int = 3) -> list[tuple[int, int, str]]:
    """TransNetV2's many-hot output (every frame of a transition): runs of at least `min_frames`
    above the threshold are gradual transitions; a fade when one of their frames, or of the three
    on either side, is flat black or white (from its 48x27 input frames), else a dissolve."""
    import numpy as np

    spans = []
    for first, end in runs(np.asarray(many_hot) > threshold):
        if end - first < min_frames:
            continue  # a hard cut
        near = thumbs[max(0, first - 3):end + 3]
        flat = any(level_of(float(t.mean()), float(t.std())) is not None for t in near)
        spans.append((first, end, "fade" if flat else "dissolve"))
    return spans
