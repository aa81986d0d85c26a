"""ocr: RapidOCR (its onnxruntime package ships the models) on sampled frames at reduced size."""

from __future__ import annotations

import numpy as np
import polars as pl

from curate.errors import CurateError

from ..decode import FrameNeed
from .base import Analyzer

_ENGINES: dict = {}


def load_engine(use_gpu: bool, size: int):
    key = (use_gpu, size)
    if key not in _ENGINES:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise CurateError(f"filter.ocr needs rapidocr-onnxruntime ({exc.name} is missing): "
                              "bash scripts/setup.sh (vision extra + pip install --no-deps rapidocr-onnxruntime), "
                              "or disable it with filter.ocr.enabled: false") from None
        kwargs = {"det_use_cuda": True, "cls_use_cuda": True, "rec_use_cuda": True} if use_gpu else {}
        # Detect at the size we sampled: RapidOCR's default upscales the short side to 736 px first.
        _ENGINES[key] = RapidOCR(det_limit_side_len=size, det_limit_type="min", **kwargs)
    return _ENGINES[key]


def text_area(boxes: list, width: int, height: int) -> float:
    """Union of the text boxes over the frame area (overlaps counted once)."""
    import cv2

    if not boxes:
        return 0.0
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.asarray(b, dtype=np.int32) for b in boxes], 1)
    return float(mask.mean())


class OcrAnalyzer(Analyzer):
    name = "ocr"
    cost = 10
    columns = {"text_area_max": pl.Float64, "text_area_mean": pl.Float64, "text_boxes": pl.Int64,
               "text": pl.Utf8}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(short_side=cfg.size, color="bgr", per_second=1.0 / cfg.sample_every_s)

    def check(self):
        if self.cfg.lang != "ch":
            raise CurateError(f"filter.ocr.lang {self.cfg.lang!r}: only 'ch' (Chinese + English) ships with "
                              "rapidocr-onnxruntime")
        load_engine(self.cfg.use_gpu, self.cfg.size)

    def begin(self, clip):
        self.images: list[np.ndarray] = []

    def feed(self, frame):
        self.images.append(frame.image(self.need))

    def end(self):
        engine = load_engine(self.cfg.use_gpu, self.cfg.size)
        areas, boxes_per_frame, texts = [], [], []
        for image in self.images:
            # The text-angle classifier is skipped: area and reading of upright captions do not need it.
            result, _ = engine(image, use_cls=False, use_rec=self.cfg.recognize)
            if not self.cfg.recognize:  # detection only: boxes without text or confidence
                result = [(box, "", 1.0) for box in (result or [])]
            result = [r for r in (result or []) if float(r[2]) >= self.cfg.min_confidence]
            areas.append(text_area([r[0] for r in result], image.shape[1], image.shape[0]))
            boxes_per_frame.append(len(result))
            texts += [r[1] for r in result if r[1] not in texts]
        if not areas:
            return {"text_area_max": None, "text_area_mean": None, "text_boxes": 0, "text": None}
        return {"text_area_max": round(max(areas), 5), "text_area_mean": round(float(np.mean(areas)), 5),
                "text_boxes": max(boxes_per_frame), "text": " | ".join(texts)[:500] or None}

    def rejects(self, result):
        area = result["text_area_max"]
        if not self.cfg.record_only and area is not None and area > self.cfg.text_area_threshold:
            return f"ocr: text_area_max {area:.4f} > text_area_threshold {self.cfg.text_area_threshold:g}"
        return None
