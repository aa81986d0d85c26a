"""What a plug-in (stage, analyzer, scorer) says about itself, read by the orchestration.

`curate/` never names a plug-in: calibration, `curate models`, Slurm resources, the dataset
card and `status` ask the stage registry (stages/__init__.py) and read these descriptions.
Light on purpose: building them imports no model package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    """What one task of a stage needs, derived from its config (a Slurm profile only overrides)."""

    cpus: int = 1
    mem: str = "2G"
    gpus: int = 0

    def plus(self, other: Resources) -> Resources:
        """Both side by side in one task: the larger CPU and memory need, the GPUs of both."""
        return Resources(max(self.cpus, other.cpus), max(self.mem, other.mem, key=mem_bytes),
                         self.gpus + other.gpus)


def mem_bytes(text: str) -> int:
    """'16G', '500M' (Slurm's units) -> bytes, to compare two memory sizes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = str(text).strip().upper().rstrip("B")
    return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(float(text or 0) * (1 << 20))


def gpus_of(devices) -> int:
    """CUDA devices a task uses, from the `device` settings of its enabled models."""
    return len({d if ":" in d else "cuda:0" for d in devices if d and d.startswith("cuda")})


@dataclass
class ModelEntry:
    """One model a plug-in can load, for `curate models`: where its weights are looked for.

    `locate()` gives (found, where) without loading; `load()` loads it (raises CurateError)."""

    name: str  # e.g. "filter.ocr", "score.laion_aes.head"
    enabled: bool
    weights: str  # what is loaded: a package, a file, an HF repo, or "none"
    locate: Callable[[], tuple[bool, str]]
    load: Callable[[], object] | None = None


def package_weights(name: str, enabled: bool, module: str, pip_name: str,
                    load: Callable[[], object] | None = None) -> ModelEntry:
    """A model whose weights ship inside a Python package."""

    def locate() -> tuple[bool, str]:
        from importlib.util import find_spec

        return (True, "ships in the package") if find_spec(module) else (False, f"package {module} is not installed")

    return ModelEntry(name, enabled, pip_name, locate, load)

