"""The scorer shape: a model analyzer (declare frames, preprocess, batched infer, summarize) whose
config carries `device`, `batch_size`, `dtype` and `min`/`max` thresholds on its main column. Scorer modules import torch and model packages only inside methods."""

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
    main: ClassVar[str] = ""  # the column that min/max apply to

    @property
    def key(self) -> str:
        return f"score.{self.name}"

    def torch_device(self):
        import torch

        require_torch_device(self.cfg.device, f"{self.key}.device")
        return torch.device(self.cfg.device)

    def torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.cfg.dtype]

    def weights(self) -> list[tuple[str, object]]:
        """(config key, WeightsRef) of every file this scorer loads, for `curate models`."""
        return []

    def checks(self):
        from curate.decisions import above, below

        found = []
        if self.cfg.min is not None:
            found.append(below(self.name, self.main, self.cfg.min, f"{self.key}.min", digits=4))
        if self.cfg.max is not None:
            found.append(above(self.name, self.main, self.cfg.max, f"{self.key}.max", digits=4))
        return found
