"""nsfw: NudeNet's detector (its package ships the ONNX model) on sampled frames."""

from __future__ import annotations

from pydantic import Field

from curate.sections import Decision, Device, Section

from ..models import ModelAnalyzer, missing_package, onnx_providers
from ..sampling import FrameNeed

EXPOSED = {"FEMALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED",
           "ANUS_EXPOSED"}


class NsfwConfig(Section):
    enabled: bool = True
    sample_every_s: float = Field(default=2.0, gt=0)
    max_samples: int = Field(default=30, ge=1)  # a longer clip (a whole video) gets this many, spread evenly
    device: Device = "cpu"
    # An exposed-class detection counts only when at least this share of its box is skin-coloured:
    # NudeNet fires on cartoon bodies (0.75 on a Big Buck Bunny frame, whose fur box is 0.19 skin);
    # real skin in its boxes measures 0.65-0.94 (faces, a baby's chest). 0: no skin check.
    min_skin: float = Field(default=0.4, ge=0, le=1)
    threshold: float = Decision(0.8, ge=0, le=1)
    record_only: bool = Decision(False)


def skin_share(image, box) -> float:
    """Share of the box [x, y, w, h] whose colour is skin: in YCrCb, Cr 135-180, Cb 77-127 and Cr at
    least 12 above Cb (light to dark skin; grey, white and brown fur or cloth lie near Cr = Cb)."""
    import cv2
    import numpy as np

    x, y, w, h = (int(round(v)) for v in box)
    crop = image[max(0, y):max(0, y + h), max(0, x):max(0, x + w)]
    if crop.size == 0:
        return 0.0
    ycc = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2YCrCb).astype(np.int16)
    cr, cb = ycc[..., 1], ycc[..., 2]
    return float(((cr >= 135) & (cr <= 180) & (cb >= 77) & (cb <= 127) & (cr >= cb + 12)).mean())


def frame_score(detections: list[dict], image=None, min_skin: float = 0.0) -> float:
    """Highest confidence of an exposed class in one frame, in [0, 1] (from NudeNet's detections),
    counting only boxes at least `min_skin` skin-coloured when the frame is given."""
    return max((float(d["score"]) for d in detections if d["class"] in EXPOSED
                and (image is None or not min_skin or skin_share(image, d["box"]) >= min_skin)), default=0.0)


def exposed_detections(rows, labels: list[str], width: int, height: int, pad_x: int, pad_y: int,
                       size: int) -> list[dict]:
    """NudeNet's own post-processing, vectorised, exposed classes only: the same candidates (best class
    score >= 0.2), boxes in source pixels, the same NMS (0.25, 0.45); NudeNet loops over its 2,100
    candidates in Python, which costs more than the model on small frames."""
    import cv2
    import numpy as np

    rows = np.asarray(rows).T  # (candidates, 4 + classes)
    classes = rows[:, 4:]
    best = classes.max(axis=1)
    keep = best >= 0.2
    if not keep.any():
        return []
    rows, best, class_ids = rows[keep], best[keep], classes[keep].argmax(axis=1)
    scale_x, scale_y = (width + pad_x) / size, (height + pad_y) / size
    x = np.clip((rows[:, 0] - rows[:, 2] / 2) * scale_x, 0, width)
    y = np.clip((rows[:, 1] - rows[:, 3] / 2) * scale_y, 0, height)
    w = np.minimum(rows[:, 2] * scale_x, width - x)
    h = np.minimum(rows[:, 3] * scale_y, height - y)
    boxes = np.stack([x, y, w, h], axis=1).tolist()
    kept = np.asarray(cv2.dnn.NMSBoxes(boxes, best.tolist(), 0.25, 0.45)).reshape(-1)
    return [{"class": labels[class_ids[i]], "score": float(best[i]), "box": boxes[i]}
            for i in kept if labels[class_ids[i]] in EXPOSED]


class NsfwAnalyzer(ModelAnalyzer):
    name = "nsfw"
    cost = 11
    # nsfw_score / nsfw_mean: max / mean over the sampled frames of the skin-checked frame score;
    # nsfw_raw: the max without the skin check (for calibration: what NudeNet alone said)
    columns = {"nsfw_score": "Float64", "nsfw_mean": "Float64", "nsfw_raw": "Float64"}
    Config = NsfwConfig
    recordable = True

    def __init__(self, cfg):
        super().__init__(cfg)
        # NudeNet pads to a square and scales that to its 320 px input: only the long side matters.
        self.need = FrameNeed(long_side=320, color="bgr", fast_color=True, per_second=1.0 / cfg.sample_every_s,
                              spread=True, max_samples=cfg.max_samples)

    def models(self, enabled: bool) -> list:
        from curate.plugin import package_weights

        return [package_weights(self.key, enabled, "nudenet", "nudenet")]

    def load(self, device):
        try:
            import onnxruntime
            from nudenet import NudeDetector
        except ImportError:
            raise missing_package("filter.nsfw", "nudenet", "vision", "filter.nsfw.enabled: false") from None
        providers = onnx_providers(device, "filter.nsfw.device")
        detector = NudeDetector()
        from ..cpus import onnx_options, runs_at_once

        # Several parts of a batch at once, each on one thread (the outputs are the same, bit for bit,
        # whatever the batch or thread count): 15 % less time than one run on 2 threads.
        detector.runs_at_once = runs_at_once(device)
        options = onnx_options(1 if detector.runs_at_once > 1 else None) if device == "cpu" else None
        # NudeDetector takes neither providers nor session options: open the same model with ours
        detector.onnx_session = onnxruntime.InferenceSession(detector.onnx_session._model_path, options,
                                                             providers=providers)
        return detector

    def infer(self, batch):
        from ..cpus import concurrently

        at_once = max(1, min(getattr(self.model, "runs_at_once", 1), len(batch)))
        step = max(1, -(-len(batch) // at_once))  # the batch in `at_once` parts, one run each
        parts = concurrently(self.scores, [batch[at:at + step] for at in range(0, len(batch), step)], at_once, "nsfw")
        return [score for part in parts for score in part]

    def scores(self, images: list) -> list[tuple[float, float]]:
        """(raw, skin-checked) score per image, from one run of NudeNet's model over them all."""
        import numpy as np
        from nudenet import nudenet

        detector = self.model
        size = detector.input_width
        prepared = [nudenet._read_image(image, size) for image in images]  # NudeNet's letterbox + blob
        (outputs,) = detector.onnx_session.run(None, {detector.input_name: np.vstack([p[0] for p in prepared])})
        labels = getattr(nudenet, "__labels")
        scores = []
        for j, p in enumerate(prepared):
            found = exposed_detections(outputs[j], labels, p[5], p[6], p[3], p[4], size)
            scores.append((frame_score(found), frame_score(found, images[j], self.cfg.min_skin)))
        return scores

    def summarize(self, scores):
        if not scores:
            return {"nsfw_score": None, "nsfw_mean": None, "nsfw_raw": None}
        checked = [score for _, score in scores]
        return {"nsfw_score": round(max(checked), 4), "nsfw_mean": round(sum(checked) / len(checked), 4),
                "nsfw_raw": round(max(raw for raw, _ in scores), 4)}

    def threshold_checks(self):
        from curate.decisions import above

        if self.cfg.record_only:
            return []
        return [above("nsfw", "nsfw_score", self.cfg.threshold, "threshold")]
