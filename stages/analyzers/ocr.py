"""ocr: RapidOCR (its onnxruntime package ships the models) on sampled frames at reduced size."""

from __future__ import annotations

import copy
import struct
from contextlib import contextmanager
from typing import Literal

from pydantic import Field

from curate.errors import CurateError
from curate.sections import Decision, Device, Section

from ..models import ModelAnalyzer, missing_package, onnx_providers
from ..sampling import FrameNeed


class OcrConfig(Section):
    enabled: bool = True
    sample_every_s: float = Field(default=2.0, gt=0)
    max_samples: int = Field(default=30, ge=1)  # a longer clip (a whole video) gets this many, spread evenly
    # short side the detector sees: the smallest that still reads the small UI text of the real
    # screen-recording test (288 loses it; 360 costs a third more)
    size: int = Field(default=320, ge=32)
    recognize: bool = False  # true also stores the text read (column `text`)
    # A detected box counts as text only when recognition reads it (run on the detected boxes only,
    # so frames where detection finds nothing pay nothing more): with at least this confidence ...
    verify: bool = True  # false: detection boxes alone count (texture and compression read as text)
    lang: str = "ch"
    device: Device = "cpu"
    # auto: OpenVINO on the CPU where it is installed (the same models, 1.5-2.7x faster here), else
    # onnxruntime (always on a GPU)
    runtime: Literal["auto", "onnxruntime", "openvino"] = "auto"
    min_confidence: float = Field(default=0.7, ge=0, le=1)
    # A box counts as text only if it is at least this tall in the source video's pixels ...
    min_text_height_px: float = Field(default=6.0, ge=0)
    # ... and holds at least this many glyphs (letters or digits read; detection-only: its length is
    # at least 0.75 x this many heights). Single glyph-like blobs in faces, hair and walls are not text.
    min_glyphs: int = Field(default=2, ge=1)
    text_area_threshold: float = Decision(0.02, ge=0, le=1)
    record_only: bool = Decision(False)


def box_size(box) -> tuple[float, float]:
    """(text height, text length) of a detected quadrilateral, in its image's pixels."""
    import cv2
    import numpy as np

    width, height = cv2.minAreaRect(np.asarray(box, dtype=np.float32))[1]
    return min(width, height), max(width, height)


def glyphs(text: str) -> int:
    """Letters and digits (any script) in a recognised string: punctuation and spaces are no text."""
    return sum(ch.isalnum() for ch in text)


def text_area(boxes: list, width: int, height: int) -> float:
    """Union of the text boxes over the frame area (overlaps counted once)."""
    import cv2
    import numpy as np

    if not boxes:
        return 0.0
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.asarray(b, dtype=np.int32) for b in boxes], 1)
    return float(mask.mean())


@contextmanager
def session_options(detector_threads: int, threads: int, openvino: bool = False):
    """RapidOCR's sessions with our options (True while they apply): onnxruntime's CPU memory arena,
    which RapidOCR turns off (without it every detection allocates and frees its activations anew:
    12-15 % of its time on small frames), no spinning threads (stages/cpus.py), and thread counts of
    our own: `detector_threads` for the detector, `threads` for the others (0: onnxruntime's choice).
    With `openvino`, OpenVINO runs the same model files instead (stages/openvino_session.py), one run
    at a time on `threads` threads: it keeps two threads busy on one image, where onnxruntime needs
    two images at once (OpenVINO's runs on several threads at once deadlocked here, setting the
    shapes of their inputs)."""
    from rapidocr_onnxruntime.utils import infer_engine

    from ..cpus import with_threads

    session_class = getattr(infer_engine, "OrtInferSession", None)
    original = getattr(session_class, "_init_sess_opts", None)
    onnxruntime_session = getattr(infer_engine, "InferenceSession", None)
    if original is None or onnxruntime_session is None:  # another RapidOCR layout: its own options stand
        yield False
        return

    def ours(config):
        options = original(config)
        options.enable_cpu_mem_arena = True
        detector = "limit_side_len" in config  # a key of the detector's section alone
        return with_threads(options, detector_threads if detector else threads)

    def openvino_session(model_path, sess_options=None, providers=None):
        from ..openvino_session import OpenVinoSession

        return OpenVinoSession(str(model_path), threads)

    session_class._init_sess_opts = staticmethod(ours)
    if openvino:
        infer_engine.InferenceSession = openvino_session
    try:
        yield True
    finally:
        session_class._init_sess_opts = staticmethod(original)
        infer_engine.InferenceSession = onnxruntime_session


class TablePreProcess:
    """RapidOCR's detector input (the image resized to multiples of 32, then (x / 255 - mean) / std per
    channel, as float32 CHW) with the arithmetic done once per pixel value instead of once per pixel:
    a table of the 256 results of each channel, computed with RapidOCR's own expression and types,
    so the input is the same bit for bit. RapidOCR's version computes in float64 (its mean and std are
    float64 arrays): 4.0 ms a 320x576 image, against 1.3 ms (a detection takes 12-36 ms)."""

    def __init__(self, original):
        import numpy as np

        self.original = original
        values = np.arange(256, dtype=np.uint8).astype("float32")
        table = (values[None, :] * original.scale - original.mean[:, None]) / original.std[:, None]
        self.tables = [row.reshape(1, 256) for row in table.astype(np.float32)]

    def __call__(self, image):
        import cv2
        import numpy as np

        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != len(self.tables):
            return self.original(image)
        resized = self.original.resize(image)
        if resized is None:
            return None
        out = np.empty((1, len(self.tables), *resized.shape[:2]), dtype=np.float32)
        for channel, (plane, table) in enumerate(zip(cv2.split(resized), self.tables)):
            cv2.LUT(plane, table, dst=out[0, channel])
        return out


def table_preprocess(get_preprocess):
    """A detector's `get_preprocess` whose pre-processing is a TablePreProcess."""
    return lambda max_side: TablePreProcess(get_preprocess(max_side))


class OcrAnalyzer(ModelAnalyzer):
    name = "ocr"
    cost = 10
    columns = {"text_area_max": "Float64", "text_area_mean": "Float64", "text_boxes": "Int64", "text": "Utf8"}
    Config = OcrConfig
    recordable = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.need = FrameNeed(short_side=cfg.size, color="bgr", fast_color=True, per_second=1.0 / cfg.sample_every_s,
                              spread=True, max_samples=cfg.max_samples)

    def models(self, enabled: bool) -> list:
        from curate.plugin import package_weights

        return [package_weights(self.key, enabled, "rapidocr_onnxruntime", "rapidocr-onnxruntime")]

    def model_key(self):
        return ("rapidocr", self.cfg.device, self.cfg.size, self.cfg.runtime)

    def openvino(self, device: str) -> bool:
        """Whether OpenVINO runs the models (filter.ocr.runtime), else onnxruntime."""
        from ..openvino_session import installed

        if self.cfg.runtime == "openvino":
            if device != "cpu":
                raise CurateError(f"filter.ocr.runtime: openvino runs on the CPU, but filter.ocr.device is {device}: "
                                  "set filter.ocr.runtime: onnxruntime (or auto) for the GPU")
            if not installed():
                raise missing_package("filter.ocr.runtime: openvino", "openvino", "vision",
                                      "filter.ocr.runtime: onnxruntime")
            return True
        return self.cfg.runtime == "auto" and device == "cpu" and installed()

    def load(self, device):
        if self.cfg.lang != "ch":
            raise CurateError(f"filter.ocr.lang {self.cfg.lang!r}: only 'ch' (Chinese + English) ships with "
                              "rapidocr-onnxruntime")
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise missing_package("filter.ocr", "rapidocr-onnxruntime", "vision",
                                  "filter.ocr.enabled: false") from None
        onnx_providers(device, "filter.ocr.device")  # stops here when CUDA was asked for and is absent
        gpu = device != "cpu"
        from ..cpus import limit_opencv, runs_at_once, task_threads

        limit_opencv()  # RapidOCR's pre- and post-processing is OpenCV's
        openvino = self.openvino(device)
        at_once = 1 if openvino else runs_at_once(device)  # images detected at once, each on one thread
        with session_options(1 if at_once > 1 else task_threads(), task_threads(), openvino) as applied:
            # a global key, which RapidOCR copies into each of its three sessions, where ours do not apply
            threads = {"intra_op_num_threads": task_threads()} if task_threads() and not applied else {}
            # Detect at the size we sampled, never larger: RapidOCR's default upscales the short side to
            # 736 px, and texture upscaled from a 160x90 frame reads as glyphs.
            engine = RapidOCR(det_limit_side_len=4096, det_limit_type="max",
                              det_use_cuda=gpu, cls_use_cuda=gpu, rec_use_cuda=gpu, **threads)
        engine.runs_at_once = at_once if applied else 1
        engine.text_det.get_preprocess = table_preprocess(engine.text_det.get_preprocess)
        if openvino and applied:  # both models that run compiled now, side by side (~0.15 s each)
            from ..cpus import concurrently

            concurrently(lambda session: session.compile(), [engine.text_det.infer.session,
                                                             engine.text_rec.session.session], 2, "ocr-compile")
        return engine

    def item(self, frame):
        image = frame.image(self.need)
        # source pixels per sampled pixel (>= 1: frames are only ever scaled down)
        return image, min(frame.source.width, frame.source.height) / min(image.shape[:2])

    def pack(self, item) -> bytes:
        image, scale = item
        return struct.pack("<f", scale) + super().pack(image)

    def unpack(self, data: bytes):
        return super().unpack(data[4:]), struct.unpack("<f", data[:4])[0]

    def is_text(self, box, text: str, scale: float) -> bool:
        """Size and glyph checks of one box (its text read, or None before recognition)."""
        height, length = box_size(box)
        if height * scale < self.cfg.min_text_height_px:
            return False
        if text is not None:
            return glyphs(text) >= self.cfg.min_glyphs
        return length >= 0.75 * self.cfg.min_glyphs * height

    def read(self, crops: list) -> list[tuple[str, float]]:
        """RapidOCR's recognizer on box crops (it batches them by width)."""
        found, _ = self.model.text_rec(crops)
        return [(str(text), float(score)) for text, score, *_ in found]

    def detect(self, image) -> list:
        """RapidOCR's detection boxes of one image (the text-angle classifier is skipped: upright
        captions do not need it). Safe on several threads at once: RapidOCR keeps the pre-processing
        of the image at hand on its detector, so each call gets its own shallow copy of both (the
        onnxruntime session is shared; its runs are thread-safe)."""
        engine = copy.copy(self.model)
        engine.text_det = copy.copy(engine.text_det)
        boxes, _ = engine(image, use_cls=False, use_rec=False)
        return boxes or []

    def infer(self, batch):
        import numpy as np

        # Detection on every image first, then one recognition over all their boxes: the two models
        # taking turns image by image would leave each one's onnxruntime threads spinning against the other's.
        from ..cpus import concurrently

        found = concurrently(self.detect, [image for image, _ in batch], getattr(self.model, "runs_at_once", 1),
                             "ocr-detect")
        detected = [[box for box in boxes if self.is_text(box, None, scale)] for boxes, (_, scale) in zip(found, batch)]
        results = [[(box, "", 1.0) for box in boxes] for boxes in detected]
        if any(detected) and (self.cfg.verify or self.cfg.recognize):
            crops = [crop for (image, _), boxes in zip(batch, detected) if boxes
                     for crop in self.model.get_crop_img_list(image, np.asarray(boxes, dtype=np.float32))]
            read = iter(self.read(crops))
            results = [[(box, *next(read)) for box in boxes] for boxes in detected]
            if self.cfg.verify:  # text is what reads as letters or digits, with confidence
                results = [[r for r in result if r[2] >= self.cfg.min_confidence and self.is_text(r[0], r[1], scale)]
                           for result, (_, scale) in zip(results, batch)]
        return [(text_area([r[0] for r in result], image.shape[1], image.shape[0]), result)
                for result, (image, _) in zip(results, batch)]

    def summarize(self, outputs):
        if not outputs:
            return {"text_area_max": None, "text_area_mean": None, "text_boxes": 0, "text": None}
        areas = [area for area, _ in outputs]
        texts: list[str] = []
        for _, result in outputs:
            texts += [r[1] for r in result if r[1] and r[1] not in texts]
        if not self.cfg.recognize:
            texts = []  # read only to verify the boxes: stored when asked for
        return {"text_area_max": round(max(areas), 5), "text_area_mean": round(sum(areas) / len(areas), 5),
                "text_boxes": max(len(result) for _, result in outputs), "text": " | ".join(texts)[:500] or None}

    def threshold_checks(self):
        from curate.decisions import above

        if self.cfg.record_only:
            return []
        return [above("ocr", "text_area_max", self.cfg.text_area_threshold, "text_area_threshold", digits=4)]
