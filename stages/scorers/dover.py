"""dover: DOVER / DOVER++ video quality (technical and aesthetic branches, and their fusion).

Loads the published `DOVER.pth` or `DOVER_plus_plus.pth` unchanged (network in dover_net.py) and
samples each clip as the original inference does:
- technical view: `technical_clips` (3) temporal segments of `clip_len` (32) frames every
  `frame_interval` (2) frames, each at a random offset inside its segment; every frame cut into a
  7x7 grid of 32x32 fragments at native resolution (one random offset per grid cell and segment),
  spliced into 224x224; frames smaller than 224 px are first upscaled (and, as in the original,
  the grid still spans the size before upscaling);
- aesthetic view: `frames` (32) frames, one at a random offset in each of as many segments,
  resized (squashed) to 224x224.
The random offsets are drawn from a generator seeded by `seed` and the clip id, so a rerun gives
the same scores. Columns: `dover_technical` and `dover_aesthetic` (the branches' raw outputs, as
the original's per-branch results) and `dover`, the fused score in [0, 1] with the original's
fusion constants: sigmoid((t - 0.1107) / 0.07355 * 0.6104 + (a + 0.08285) / 0.03774 * 0.3896).
"""

from __future__ import annotations

import hashlib
import math

from pydantic import Field

from ..sampling import FrameNeed
from ..weights import WeightsRef
from .base import NetworkScorer, ScorerConfig, clip_frames

HOW = ("download DOVER.pth (or DOVER_plus_plus.pth for DOVER++) from the releases of "
       "github.com/VQAssessment/DOVER and set score.dover.weights.path, or put it in a HF repo of yours "
       "(weights.hf_repo + weights.filename)")
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
GRID, FRAGMENT, SIDE = 7, 32, 224


class DoverConfig(ScorerConfig):
    weights: WeightsRef = Field(default_factory=WeightsRef)
    batch_size: int = Field(default=1, ge=1)  # clips per forward pass
    frames: int = Field(default=32, ge=1)  # aesthetic view: frames, one per temporal segment
    clip_len: int = Field(default=32, ge=1)  # technical view: frames per temporal segment
    technical_clips: int = Field(default=3, ge=1)  # technical view: temporal segments
    frame_interval: int = Field(default=2, ge=1)
    seed: int = 42


def fuse(technical: float, aesthetic: float) -> float:
    x = (technical - 0.1107) / 0.07355 * 0.6104 + (aesthetic + 0.08285) / 0.03774 * 0.3896
    return 1 / (1 + math.exp(-x))


def temporal_indices(frames: int, length: int, segments: int, interval: int, rng):
    """Frame ordinals: `segments` equal parts, `length` frames every `interval` in each, at a random
    offset where the part is long enough; wrapped around short clips, as the original sampler."""
    import numpy as np

    part = frames // segments
    starts = np.arange(segments) * part
    span = length * interval
    offsets = rng.integers(0, part - span, size=segments) if part > span else np.zeros(segments, dtype=int)
    ordinals = (np.arange(length)[None, :] * interval + offsets[:, None] + starts[:, None]).reshape(-1)
    return np.mod(ordinals, max(1, frames))


class DoverSampler:
    """Builds both views of one clip frame by frame; only the wanted frames are ever converted."""

    def __init__(self, frames: int, cfg: DoverConfig, rng):
        import numpy as np

        self.cfg, self.rng = cfg, rng
        self.technical_at = temporal_indices(frames, cfg.clip_len, cfg.technical_clips, cfg.frame_interval, rng)
        self.aesthetic_at = temporal_indices(frames, 1, cfg.frames, cfg.frame_interval, rng)
        self.slots: dict[int, list[tuple[str, int]]] = {}
        for kind, ordinals in (("technical", self.technical_at), ("aesthetic", self.aesthetic_at)):
            for slot, ordinal in enumerate(ordinals.tolist()):
                self.slots.setdefault(ordinal, []).append((kind, slot))
        self.technical = np.zeros((len(self.technical_at), SIDE, SIDE, 3), dtype=np.uint8)
        self.aesthetic = np.zeros((len(self.aesthetic_at), SIDE, SIDE, 3), dtype=np.uint8)
        self.offsets = None
        self.taken = 0

    def wants(self, ordinal: int) -> bool:
        return ordinal in self.slots

    def _grid(self, height: int, width: int):
        """Cell origins and per (cell, segment) offsets, from the frame size before any upscaling."""
        import numpy as np

        segments = self.cfg.technical_clips
        origins, offsets = [], []
        for extent in (height, width):
            cell = extent // GRID
            # at 0 on a side under FRAGMENT px (the reference's negative index wraps round the upscaled
            # frame; a slice from it would be empty)
            origins.append([max(0, min(cell * i, extent - FRAGMENT)) for i in range(GRID)])
            offsets.append(self.rng.integers(0, cell - FRAGMENT, size=(GRID, GRID, segments)) if cell > FRAGMENT
                           else np.zeros((GRID, GRID, segments), dtype=int))
        return origins, offsets

    def take(self, ordinal: int, image) -> None:
        import torch
        import torch.nn.functional as F

        height, width = image.shape[:2]
        if self.offsets is None:
            self.offsets = self._grid(height, width)
        (rows, cols), (row_off, col_off) = self.offsets
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
        ratio = min(height / SIDE, width / SIDE)
        if ratio < 1:  # small frames are upscaled first (truncated back to uint8, as the original)
            pixels = (F.interpolate(pixels / 255.0, scale_factor=1 / ratio, mode="bilinear") * 255.0).to(torch.uint8)
        for kind, slot in self.slots[ordinal]:
            if kind == "aesthetic":
                resized = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(SIDE, SIDE),
                                        mode="bilinear", antialias=True, align_corners=False)
                self.aesthetic[slot] = resized.round().clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8).numpy()
                continue
            segment = slot // self.cfg.clip_len
            frame = pixels[0].permute(1, 2, 0).numpy()
            for i in range(GRID):
                for j in range(GRID):
                    top = rows[i] + int(row_off[i, j, segment])
                    left = cols[j] + int(col_off[i, j, segment])
                    self.technical[slot, i * FRAGMENT:(i + 1) * FRAGMENT, j * FRAGMENT:(j + 1) * FRAGMENT] = \
                        frame[top:top + FRAGMENT, left:left + FRAGMENT]
        self.taken += 1

    def items(self) -> list:
        return [(self.technical, self.aesthetic)] if self.taken else []


class DoverScorer(NetworkScorer):
    name = "dover"
    main = "dover"
    cost = 30
    columns = {"dover": "Float64", "dover_technical": "Float64", "dover_aesthetic": "Float64"}
    Config = DoverConfig
    how = HOW

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(color="rgb")  # every frame is offered; only the sampled ones are converted

    def network(self):
        from .dover_net import Dover

        return Dover()

    def clip_sampler(self, clip):
        import numpy as np

        frames = clip_frames(clip)
        key = int.from_bytes(hashlib.sha1(str(clip.get("clip_id")).encode()).digest()[:8], "little")
        return DoverSampler(frames, self.cfg, np.random.default_rng([self.cfg.seed, key]))

    def infer(self, batch):
        import numpy as np
        import torch

        model = self.model
        device, dtype = next(model.parameters()).device, self.torch_dtype()
        mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1, 1)
        std = torch.tensor(STD, device=device).view(1, 3, 1, 1, 1)

        def view(frames, clips):  # (clips * T, H, W, 3) uint8 -> (clips, 3, T, H, W) normalised
            x = self.to_model(torch.from_numpy(np.ascontiguousarray(frames)), device)
            x = x.view(clips, -1, SIDE, SIDE, 3).permute(0, 4, 1, 2, 3).float()
            return ((x - mean) / std).to(dtype)

        clips = self.cfg.technical_clips
        technical = view(np.concatenate([t for t, _ in batch]), clips * len(batch))
        aesthetic = view(np.concatenate([a for _, a in batch]), len(batch))
        with torch.inference_mode():
            tech, aes = self.model(technical, aesthetic)
        tech = tech.float().view(len(batch), clips).mean(1).cpu().tolist()
        return list(zip(tech, aes.float().cpu().tolist()))

    def summarize(self, outputs):
        if not outputs:
            return {column: None for column in self.columns}
        technical, aesthetic = outputs[0]
        return {"dover": round(fuse(technical, aesthetic), 4), "dover_technical": round(technical, 5),
                "dover_aesthetic": round(aesthetic, 5)}
