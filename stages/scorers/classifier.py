"""classifier: any Hugging Face image-classification model (transformers), from a local folder or
a repo in the HF cache; `label` names the positive class. Covers the watermark detectors and NSFW
classifiers of the Sora-challenge recipe (which dropped watermarked clips at p > 0.6: `max: 0.6`).

Columns: `<column>` the highest probability of `label` over the sampled frames, `<column>_mean`
its mean. Several classifiers run side by side as entries of `score.classifiers`.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from curate.errors import CurateError

from ..sampling import FrameNeed
from .base import Scorer, ScorerConfig


class ClassifierConfig(ScorerConfig):
    frames: int = Field(default=3, ge=1)  # spread evenly over the clip
    enabled: bool = True  # an entry of score.classifiers is on unless it says otherwise
    model: str  # a local folder with config.json, or a HF repo id (looked up in the HF cache)
    revision: str | None = None
    label: str  # the positive class, as in the model's id2label
    column: str | None = None  # default: the label, lower-case, non-alphanumerics as _

    @field_validator("column")
    @classmethod
    def _column(cls, value):
        if value is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError("use lower-case letters, digits and _")
        return value


def column_name(cfg: ClassifierConfig) -> str:
    return cfg.column or re.sub(r"[^a-z0-9]+", "_", cfg.label.lower()).strip("_") or "label"


class ClassifierScorer(Scorer):
    name = "classifier"
    cost = 15
    Config = ClassifierConfig

    def __init__(self, cfg, position: int = 0):
        super().__init__(cfg)
        self.column = column_name(cfg)
        self.main = self.column
        self.position = position
        self.columns = {self.column: "Float64", f"{self.column}_mean": "Float64"}
        self.need = FrameNeed(short_side=384, color="rgb", count=cfg.frames)

    @property
    def key(self) -> str:
        return f"score.classifiers[{self.position}]"

    def models(self, enabled: bool) -> list:
        from curate.plugin import ModelEntry

        return [ModelEntry(f"{self.key} ({self.column})", enabled, self.cfg.model, self.source, self.preflight)]

    def source(self) -> tuple[bool, str]:
        """Whether the model is there without loading it: a local folder, or the HF cache."""
        from pathlib import Path

        folder = Path(self.cfg.model).expanduser()
        if folder.is_dir():
            has = (folder / "config.json").is_file()
            return has, f"{folder} ({'found' if has else 'no config.json'})"
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(self.cfg.model, "config.json", revision=self.cfg.revision), str)
        return cached, f"hf://{self.cfg.model} ({'in the HF cache' if cached else 'not in the HF cache'})"

    def model_key(self):
        return ("classifier", self.cfg.model, self.cfg.revision, self.cfg.device, self.cfg.dtype)

    def load(self, device):
        try:
            import torch  # noqa: F401
            from transformers import AutoImageProcessor, AutoModelForImageClassification
        except ImportError as exc:
            from ..models import missing_package

            raise missing_package(self.key, exc.name or "transformers", "score") from None
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # task logs are files: no progress bars in them
        torch_device = self.torch_device()
        how = (f"set {self.key}.model to a folder with config.json and the weights, or a repo id that is in the "
               f"HF cache (`hf download {self.cfg.model}` on a machine with internet)")
        try:
            processor = AutoImageProcessor.from_pretrained(self.cfg.model, revision=self.cfg.revision)
            model = AutoModelForImageClassification.from_pretrained(self.cfg.model, revision=self.cfg.revision)
        except Exception as exc:  # not found, offline and not cached, bad files
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
            raise CurateError(f"{self.key}.model {self.cfg.model!r} cannot be loaded: {detail}; {how}") from None
        labels = {str(v): int(k) for k, v in model.config.id2label.items()}
        if self.cfg.label not in labels:
            raise CurateError(f"{self.key}.label {self.cfg.label!r} is not a class of {self.cfg.model}; "
                              f"its classes: {', '.join(sorted(labels))}")
        multi = model.config.problem_type == "multi_label_classification"
        return model.to(torch_device, self.torch_dtype()).eval(), processor, labels[self.cfg.label], multi

    def preprocess(self, image):
        return image  # the processor works on batches in `infer`

    def infer(self, batch):
        import torch

        model, processor, index, multi = self.model
        inputs = processor(images=list(batch), return_tensors="pt")
        with torch.inference_mode():
            pixels = self.to_model(inputs["pixel_values"], model.device, self.torch_dtype())
            logits = model(pixel_values=pixels).logits.float()
        probs = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
        return probs[:, index].cpu().tolist()

    def summarize(self, probs):
        if not probs:
            return {self.column: None, f"{self.column}_mean": None}
        return {self.column: round(max(probs), 4), f"{self.column}_mean": round(sum(probs) / len(probs), 4)}
