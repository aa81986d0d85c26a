"""The part of onnxruntime's `InferenceSession` that RapidOCR uses, run by OpenVINO on the CPU.

RapidOCR's detector and recognizer ran 1.5x and 2.7x faster on OpenVINO than on onnxruntime here
(PP-OCRv4, one thread per run, outputs within 4e-6 of each other), from the same ONNX files its
package ships. The model is read when the session is made and compiled when it is first run (or
`compile()`d), so a model that is never run (RapidOCR's angle classifier, which we skip) costs no
compile.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace


def installed() -> bool:
    """Whether OpenVINO can be imported here (an install that fails to load counts as none)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoSession:
    """Runs one at a time (a lock keeps callers on other threads waiting), each on `threads` threads
    (0: OpenVINO's choice). Always in float32: OpenVINO would otherwise run in bfloat16 on CPUs that
    have it, and the figures would depend on the machine."""

    def __init__(self, path: str, threads: int = 0):
        import openvino

        self.core = openvino.Core()
        self.model = self.core.read_model(path)
        # Not pinned to cores: two workers on one node would pin their threads to the same ones.
        self.config = {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self._request = None
        self._lock = threading.Lock()

    def compile(self):
        """The model's infer request, compiled at the first call."""
        with self._lock:
            if self._request is None:
                self._request = self.core.compile_model(self.model, "CPU", self.config).create_infer_request()
        return self._request

    def get_inputs(self) -> list:
        return [SimpleNamespace(name=port.get_any_name()) for port in self.model.inputs]

    def get_outputs(self) -> list:
        return [SimpleNamespace(name=port.get_any_name()) for port in self.model.outputs]

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    def get_modelmeta(self):
        """The ONNX file's metadata (RapidOCR's recognizer keeps its character list there)."""
        framework = self.model.get_rt_info()["framework"] if self.model.has_rt_info(["framework"]) else {}
        return SimpleNamespace(custom_metadata_map={key: value.astype(str) for key, value in framework.items()})

    def run(self, output_names: list[str] | None, feed: dict) -> list:
        request = self.compile()
        with self._lock:
            results = request.infer(feed)
        names = output_names or [output.name for output in self.get_outputs()]
        by_name = {port.get_any_name(): value for port, value in results.items()}
        return [by_name[name] for name in names]
