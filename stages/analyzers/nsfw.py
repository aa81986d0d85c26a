"""nsfw: NudeNet's detector (its package ships the ONNX model) on sampled frames."""

from __future__ import annotations

from pydantic import Field

from curate.sections import Decision, Device, Section

from ..decode import FrameNeed
from ..models import ModelAnalyzer, missing_package, onnx_providers

EXPOSED = {"FEMALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED",
           "ANUS_EXPOSED"}


class NsfwConfig(Section):
    enabled: bool = True
    sample_every_s: float = Field(default=2.0, gt=0)
    max_samples: int = Field(default=30, ge=1)  # a longer clip (a whole video) gets this many, spread evenly
    device: Device = "cpu"
    threshold: float = Decision(0.8, ge=0, le=1)
    record_only: bool = Decision(False)


def frame_score(detections: list[dict]) -> float:
    """Highest confidence of an exposed class in one frame, in [0, 1]."""
    return max((float(d["score"]) for d in detections if d["class"] in EXPOSED), default=0.0)


class NsfwAnalyzer(ModelAnalyzer):
    name = "nsfw"
    cost = 11
    columns = {"nsfw_score": "Float64", "nsfw_mean": "Float64"}
    Config = NsfwConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(short_side=320, color="bgr", fast_color=True, per_second=1.0 / cfg.sample_every_s,
                              max_samples=cfg.max_samples)

    def load(self, device):
        try:
            import onnxruntime
            from nudenet import NudeDetector
        except ImportError:
            raise missing_package("filter.nsfw", "nudenet", "vision", "filter.nsfw.enabled: false") from None
        providers = onnx_providers(device, "filter.nsfw.device")
        detector = NudeDetector()
        if device != "cpu":  # NudeDetector ignores its providers argument: open the same model on the GPU
            detector.onnx_session = onnxruntime.InferenceSession(
                detector.onnx_session._model_path, providers=providers)
        return detector

    def infer(self, batch):
        return [frame_score(found) for found in self.model.detect_batch(batch, batch_size=len(batch))]

    def summarize(self, scores):
        if not scores:
            return {"nsfw_score": None, "nsfw_mean": None}
        return {"nsfw_score": round(max(scores), 4), "nsfw_mean": round(sum(scores) / len(scores), 4)}

    def checks(self):
        from curate.decisions import above

        if self.cfg.record_only:
            return []
        return [above("nsfw", "nsfw_score", self.cfg.threshold, "threshold")]
