"""Model-backed consumers: one model cache per process, one device rule, and the roles of a model analyzer.

A model analyzer is a small model holder (`ModelHolder`: load once per process and device, the
weights it reads) plus three consumer roles: it collects model inputs from the decode
(`SampledInputs`), infers them in batches across clips (`BatchedInference`), and packs them into
split's records (`Recordable`). Missing packages, weights or devices stop the task in
`preflight()`, before any work, with a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from curate.errors import CurateError, DeviceUnavailable

from .analyzers.base import Analyzer
from .handoff import Record

_MODELS: dict[tuple, Any] = {}
JPEG_QUALITY = 95


def cached_model(key: tuple, build: Callable[[], Any]) -> Any:
    """One instance per key and process: every task of a worker shares it."""
    if key not in _MODELS:
        _MODELS[key] = build()
    return _MODELS[key]


def missing_package(feature: str, package: str, extra: str, disable: str | None = None) -> CurateError:
    setup = "bash scripts/setup.sh --torch" if extra == "models" else "bash scripts/setup.sh"
    text = f"{feature} needs {package}, which is not installed: {setup} (or pip install 'curate[{extra}]')"
    return CurateError(text + (f", or disable it with {disable}" if disable else ""))


def require_torch_device(device: str, key: str) -> None:
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"{key} = {device}, but torch sees no CUDA device here; run on a GPU node "
                          f"(slurm.stages.<stage>.gres: gpu:1) or set {key}: cpu")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise DeviceUnavailable(f"{key} = {device}, but only {torch.cuda.device_count()} CUDA device(s) are visible")


def onnx_providers(device: str, key: str) -> list:
    """onnxruntime execution providers for a device setting; CUDA must really be available."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise DeviceUnavailable(f"{key} = {device}, but onnxruntime has no CUDA provider here: install "
                          f"onnxruntime-gpu on the GPU nodes, or set {key}: cpu")
    index = int(device.split(":")[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


class ModelHolder:
    """Loads its model once per process and device (`load`, cached by `model_key`)."""

    cfg: Any

    def model_key(self) -> tuple:
        return (type(self).__name__, self.cfg.device)

    def load(self, device: str) -> Any:
        raise NotImplementedError

    @property
    def model(self) -> Any:
        return cached_model(self.model_key(), lambda: self.load(self.cfg.device))

    def preflight(self) -> None:
        self.model  # noqa: B018 - loading is the check: a missing package or device stops here


class SampledInputs:
    """Frame consumer role: one model input per sampled frame (`item`), or the frames a clip
    sampler of the model's own picks; `live_record` hands them to the engine unpacked."""

    need: Any

    def preprocess(self, image) -> Any:
        return image

    def item(self, frame) -> Any:
        """One model input from one sampled frame."""
        return self.preprocess(frame.image(self.need))

    def clip_sampler(self, clip: dict):
        """A per-clip frame picker for models that sample like their original code (None: `need` decides).

        It has `wants(ordinal)`, `take(ordinal, image)` and `items()`; only wanted frames are converted."""
        return None

    def begin(self, clip: dict) -> None:
        self.items: list = []
        self.ordinal = 0
        self.sampler = self.clip_sampler(clip)

    def feed(self, frame) -> None:
        if self.sampler is None:
            self.items.append(self.item(frame))
        elif self.sampler.wants(self.ordinal):
            self.sampler.take(self.ordinal, frame.image(self.need))
        self.ordinal += 1

    def collected(self) -> list:
        """The model inputs of the clip just fed (and forget them)."""
        items = self.sampler.items() if self.sampler is not None else self.items
        self.items, self.sampler = [], None
        return items

    def live_record(self) -> Record:
        return Record(items=self.collected(), packed=False)


class BatchedInference:
    """Inference role: whole batches across clips (`infer`), reduced per clip (`summarize`)."""

    cfg: Any

    @property
    def batch_size(self) -> int:
        return getattr(self.cfg, "batch_size", 8)

    def infer(self, batch: list) -> list:
        """One output per item of the batch."""
        raise NotImplementedError

    def summarize(self, outputs: list) -> dict[str, Any]:
        raise NotImplementedError

    def infer_all(self, items: list, prepare: Callable[[list], list] | None = None) -> list:
        """`infer` over the items in batches of `batch_size` (each batch through `prepare` first)."""
        outputs: list = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start:start + self.batch_size]
            outputs += self.infer(prepare(batch) if prepare else batch)
        return outputs

    def measure(self, records: list[Record]) -> list[dict[str, Any]]:
        """Each clip's columns, batching across all the clips' inputs; packed inputs are unpacked
        one batch at a time, so a stage's records never sit in memory as images all at once."""

        def prepare(batch: list) -> list:
            return [self.unpack(data) if packed else data for packed, data in batch]

        outputs = self.infer_all([(record.packed, item) for record in records for item in record.items], prepare)
        results, at = [], 0
        for record in records:
            results.append(self.summarize(outputs[at:at + len(record.items)]))
            at += len(record.items)
        return results

    def end(self) -> dict[str, Any]:
        return self.measure([self.live_record()])[0]


class Recordable:
    """Record role: split's decode may record this consumer's inputs (`item` of each grid sample,
    packed), so its stage need not decode; for models fed plain sampled frames."""

    recordable: ClassVar[bool] = False
    need: Any

    def pack(self, item) -> bytes:
        """An input as bytes for split's record (a BGR or grey image: JPEG at quality 95)."""
        import cv2

        ok, data = cv2.imencode(".jpg", item, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("could not encode a sampled frame")
        return data.tobytes()

    def unpack(self, data: bytes) -> Any:
        import cv2
        import numpy as np

        flag = cv2.IMREAD_GRAYSCALE if self.need.color == "gray" else cv2.IMREAD_COLOR
        return cv2.imdecode(np.frombuffer(data, np.uint8), flag)

    def unpacked(self, record: Record) -> Record:
        """The record with its inputs ready for `infer` (decoded where a producer thread has time)."""
        if not record.packed or record.items is None:
            return record
        return Record(items=[self.unpack(data) for data in record.items], packed=False)

    def recorder(self, grid_s: float):
        from .handoff import GridRecorder

        return GridRecorder(self, grid_s) if self.recordable else None


class ModelAnalyzer(ModelHolder, SampledInputs, BatchedInference, Recordable, Analyzer):
    """An analyzer backed by a model; subclasses give load, preprocess, infer and summarize."""
