"""The scorer shape: a model analyzer (declare frames, preprocess, batched infer, summarize) whose
config carries `device`, `batch_size`, `dtype` and `min`/`max` thresholds on its main column.
Scorer modules import torch and model packages only inside methods."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from curate.sections import Decision, Device, Section

from ..models import ModelAnalyzer, require_torch_device


class ScorerConfig(Section):
    enabled: bool = False
    device: Device = "cpu"
    batch_size: int = Field(default=16, ge=1)
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    min: float | None = Decision(None)  # [threshold] drop clips whose main column is below this
    max: float | None = Decision(None)  # [threshold] drop clips whose main column is above this


class Scorer(ModelAnalyzer):
    section = "score"
    main: ClassVar[str] = ""  # the column that min/max apply to

    def torch_device(self):
        import torch

        require_torch_device(self.cfg.device, f"{self.key}.device")
        return torch.device(self.cfg.device)

    def torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.cfg.dtype]

    def to_model(self, batch, device, dtype=None):
        """A CPU batch onto the model's device: on CUDA through pinned memory, copied without
        blocking, so the next batch's host work overlaps this one's transfer."""
        if getattr(device, "type", str(device)).startswith("cuda"):
            return batch.pin_memory().to(device, dtype, non_blocking=True)
        return batch.to(device, dtype)

    def weights(self) -> list[tuple[str, object]]:
        """(config key, WeightsRef) of every file this scorer loads."""
        return []

    def models(self, enabled: bool) -> list:
        """One entry per weights file (weight-free: one entry saying so); loading is `preflight`."""
        from curate.plugin import ModelEntry

        def located(ref) -> tuple[bool, str]:
            path, where = ref.locate()
            return path is not None, where

        entries = [ModelEntry(key, enabled, ref.describe(), lambda ref=ref: located(ref))
                   for key, ref in self.weights()]
        entries = entries or [ModelEntry(self.key, enabled, "none", lambda: (True, "weight-free"))]
        entries[-1].load = self.preflight
        return entries

    def threshold_checks(self):
        from curate.decisions import above, below

        found = []
        if self.cfg.min is not None:
            found.append(below(self.name, self.main, self.cfg.min, f"{self.key}.min", digits=4))
        if self.cfg.max is not None:
            found.append(above(self.name, self.main, self.cfg.max, f"{self.key}.max", digits=4))
        return found


def clip_frames(clip: dict) -> int:
    """Frames of a clip: its frame range, or its duration at its frame rate."""
    frames = (clip.get("end_frame") or 0) - (clip.get("start_frame") or 0)
    if frames <= 0:
        frames = round(((clip.get("end_s") or 0) - (clip.get("start_s") or 0)) * (clip.get("fps") or 25))
    return max(1, frames)


class NetworkScorer(Scorer):
    """A scorer whose network is our own torch module loading one published checkpoint unchanged
    (`weights`); `how` says where to get that file."""

    how: ClassVar[str] = ""

    def network(self):
        """The torch module, with the checkpoint's module names and shapes."""
        raise NotImplementedError

    def weights(self):
        return [(f"{self.key}.weights", self.cfg.weights)]

    def model_key(self):
        return (self.name, self.cfg.device, self.cfg.dtype, self.cfg.weights.describe())

    def load(self, device):
        from ..weights import load_into, load_state_dict

        path = self.cfg.weights.resolve(f"{self.key}.weights", self.how)
        try:
            model = self.network()
        except ImportError as exc:
            from ..models import missing_package

            raise missing_package(self.key, exc.name or "torch", "score") from None
        load_into(model, load_state_dict(path, f"{self.key}.weights"), path, f"{self.key}.weights", self.how)
        return model.to(self.torch_device(), self.torch_dtype()).eval()
