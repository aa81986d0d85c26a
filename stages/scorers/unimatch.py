"""unimatch: optical-flow motion with UniMatch / GMFlow, as the pipeline we replace scored it.

Loads the published `gmflow-scale1-mixdata-train320x576-4c3a6e9a.pth` unchanged (network in
unimatch_net.py). Per clip: the frames at `frame_indices` (0, 10, 20, 30 of the clip; past its end,
the last frame), portrait frames turned to landscape, resized to 320x576 (bilinear, corners
aligned), flow between consecutive frames. Columns: `unimatch_flow`, the mean absolute flow
component over all pairs and pixels (pixels at 320x576, the seed pipeline's `flow` score), and
`unimatch_flow_max`, the largest per-pair mean.
"""

from __future__ import annotations

from pydantic import Field

from ..sampling import FrameNeed
from ..weights import WeightsRef
from .base import NetworkScorer, ScorerConfig, clip_frames

HOW = ("download gmflow-scale1-mixdata-train320x576-4c3a6e9a.pth (UniMatch model zoo, "
       "github.com/autonomousvision/unimatch) and set score.unimatch.weights.path, or weights.hf_repo + filename")


class UnimatchConfig(ScorerConfig):
    weights: WeightsRef = Field(default_factory=WeightsRef)
    batch_size: int = Field(default=1, ge=1)  # clips per forward pass (each gives len(frame_indices) - 1 pairs)
    frame_indices: list[int] = Field(default_factory=lambda: [0, 10, 20, 30], min_length=2)
    height: int = Field(default=320, ge=16, multiple_of=16)
    width: int = Field(default=576, ge=16, multiple_of=16)


class FramePicker:
    """Keeps the clip's frames at the configured ordinals, resized as the seed pipeline did."""

    def __init__(self, frames: int, cfg: UnimatchConfig):
        self.cfg = cfg
        self.ordinals = [min(i, max(0, frames - 1)) for i in cfg.frame_indices]
        self.images: dict[int, object] = {}

    def wants(self, ordinal: int) -> bool:
        return ordinal in self.ordinals

    def take(self, ordinal: int, image) -> None:
        import torch
        import torch.nn.functional as F

        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        if pixels.shape[2] > pixels.shape[3]:  # portrait: turned, as the seed pipeline did
            pixels = pixels.transpose(2, 3)
        self.images[ordinal] = F.interpolate(pixels, size=(self.cfg.height, self.cfg.width), mode="bilinear",
                                             align_corners=True)[0]

    def items(self) -> list:
        import torch

        present = [self.images[o] for o in self.ordinals if o in self.images]
        return [torch.stack(present)] if len(present) >= 2 else []


class UnimatchScorer(NetworkScorer):
    name = "unimatch"
    main = "unimatch_flow"
    cost = 25
    columns = {"unimatch_flow": "Float64", "unimatch_flow_max": "Float64"}
    Config = UnimatchConfig
    how = HOW

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(color="rgb")  # every frame is offered; only the picked ones are converted

    def network(self):
        from .unimatch_net import GMFlow

        return GMFlow()

    def clip_sampler(self, clip):
        frames = clip_frames(clip)
        return FramePicker(frames, self.cfg)

    def infer(self, batch):
        import torch

        model = self.model
        device, dtype = next(model.parameters()).device, self.torch_dtype()
        first = self.to_model(torch.cat([clip[:-1] for clip in batch]), device, dtype)
        second = self.to_model(torch.cat([clip[1:] for clip in batch]), device, dtype)
        with torch.inference_mode():
            per_pair = model(first, second).float().abs().mean(dim=(1, 2, 3)).cpu().tolist()
        outputs, at = [], 0
        for clip in batch:
            outputs.append(per_pair[at:at + len(clip) - 1])
            at += len(clip) - 1
        return outputs

    def summarize(self, outputs):
        pairs = [value for clip in outputs for value in clip]
        if not pairs:
            return {column: None for column in self.columns}
        return {"unimatch_flow": round(sum(pairs) / len(pairs), 4), "unimatch_flow_max": round(max(pairs), 4)}
