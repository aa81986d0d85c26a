"""laion_aes: the LAION aesthetic predictor — a CLIP ViT-L/14 image embedding (open_clip), L2
normalised, through a LAION head: `sa_0_4_vit_l_14_linear.pth` (one Linear(768, 1)) or the
improved predictor's `sac+logos+ava1-l14-linearMSE.pth` (an MLP 768-1024-128-64-16-1, no
activations). Both files load unchanged. Scores are about 1-10; mean, min and max over the
sampled frames."""

from __future__ import annotations

from pydantic import Field

from curate.errors import CurateError

from ..sampling import FrameNeed
from ..weights import WeightsRef, load_into, load_state_dict
from .base import Scorer, ScorerConfig

HEAD_HOW = ("get sa_0_4_vit_l_14_linear.pth from github.com/LAION-AI/aesthetic-predictor or "
            "sac+logos+ava1-l14-linearMSE.pth from github.com/christophschuhmann/improved-aesthetic-predictor "
            "and set score.laion_aes.head.path")
CLIP_HOW = ("the OpenAI ViT-L/14 weights for open_clip are open_clip_pytorch_model.bin of "
            "timm/vit_large_patch14_clip_224.openai")


class LaionAesConfig(ScorerConfig):
    frames: int = Field(default=3, ge=1)  # spread evenly over the clip
    clip_model: str = "ViT-L-14-quickgelu"  # an open_clip model name (OpenAI weights use QuickGELU)
    clip_config: str | None = None  # a model config JSON for an architecture open_clip does not ship
    clip: WeightsRef = Field(default_factory=lambda: WeightsRef(
        hf_repo="timm/vit_large_patch14_clip_224.openai", filename="open_clip_pytorch_model.bin"))
    head: WeightsRef = Field(default_factory=WeightsRef)


def build_head(state: dict, path, key: str):
    """The LAION head these weights are for: a single linear layer or the improved MLP."""
    from torch import nn

    if set(state) == {"weight", "bias"}:
        head = nn.Linear(state["weight"].shape[1], 1)
    elif any(k.startswith("layers.") for k in state):
        width = state["layers.0.weight"].shape[1] if "layers.0.weight" in state else 768
        head = nn.Sequential()
        head.layers = nn.Sequential(nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                    nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))
    else:
        raise CurateError(f"{key}: {path} is neither LAION head (keys weight/bias, or layers.N.*); "
                          f"it has {', '.join(list(state)[:5])}; {HEAD_HOW}")
    load_into(head, state, path, key, HEAD_HOW)
    return head


class LaionAesScorer(Scorer):
    name = "laion_aes"
    main = "aesthetic"
    cost = 20
    # clip_embedding: the clip's mean CLIP image embedding (L2 normalised, float16 bytes), for dedup's
    # semantic duplicates (stages/dedup.py)
    columns = {"aesthetic": "Float64", "aesthetic_min": "Float64", "aesthetic_max": "Float64",
               "clip_embedding": "Binary"}
    Config = LaionAesConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(short_side=224, color="rgb", count=cfg.frames)

    def weights(self):
        return [(f"{self.key}.clip", self.cfg.clip), (f"{self.key}.head", self.cfg.head)]

    def model_key(self):
        c = self.cfg
        return ("laion_aes", c.device, c.dtype, c.clip_model, c.clip_config, c.clip.describe(), c.head.describe())

    def load(self, device):
        try:
            import open_clip
            import torch
        except ImportError as exc:
            from ..models import missing_package

            raise missing_package(self.key, exc.name or "open_clip_torch", "score") from None
        head_path = self.cfg.head.resolve(f"{self.key}.head", HEAD_HOW)
        clip_path = self.cfg.clip.resolve(f"{self.key}.clip", CLIP_HOW)
        torch_device = self.torch_device()
        if self.cfg.clip_config:
            open_clip.add_model_config(self.cfg.clip_config)
        import logging

        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # open_clip warns "no pretrained weights": we load them just below
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(self.cfg.clip_model)
        except RuntimeError as exc:
            raise CurateError(f"{self.key}.clip_model {self.cfg.clip_model!r}: {exc}") from None
        finally:
            quiet.setLevel(level)
        state = load_state_dict(clip_path, f"{self.key}.clip")
        load_into(model, state, clip_path, f"{self.key}.clip", CLIP_HOW)
        head = build_head(load_state_dict(head_path, f"{self.key}.head"), head_path, f"{self.key}.head")
        width = model.visual.output_dim
        head_width = next(iter(head.parameters())).shape[1]
        if head_width != width:
            raise CurateError(f"{self.key}.head: {head_path} takes {head_width}-wide embeddings but "
                              f"{self.cfg.clip_model} gives {width}; the LAION heads are for ViT-L/14 (768)")
        model = model.visual.to(torch_device, self.torch_dtype()).eval()
        head = head.to(torch_device, torch.float32).eval()
        return model, head, preprocess

    def preprocess(self, image):
        from PIL import Image

        return self.model[2](Image.fromarray(image))

    def infer(self, batch):
        import torch

        visual, head, _ = self.model
        with torch.inference_mode():
            pixels = torch.stack(batch).to(next(visual.parameters()).device, self.torch_dtype())
            embedding = visual(pixels).float()
            embedding = embedding / embedding.norm(dim=-1, keepdim=True)
            scores = head(embedding).squeeze(-1).cpu().tolist()
            return list(zip(scores, embedding.cpu().numpy()))

    def summarize(self, outputs):
        import numpy as np

        if not outputs:
            return {column: None for column in self.columns}
        scores = [score for score, _ in outputs]
        mean = np.mean([embedding for _, embedding in outputs], axis=0)
        mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return {"aesthetic": round(sum(scores) / len(scores), 4), "aesthetic_min": round(min(scores), 4),
                "aesthetic_max": round(max(scores), 4), "clip_embedding": mean.astype(np.float16).tobytes()}
