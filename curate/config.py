"""The run configuration: one YAML file validated into typed objects.

Every section forbids unknown keys, so a typo is an error that names the key instead of
a silently ignored setting. Secrets never live here: they are read from the environment.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

# Environment variables that may hold secrets; their values are scrubbed from anything we write.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENROUTER_API_KEY", "OPENAI_API_KEY")

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
               "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def parse_bytes(value: Any) -> int:
    """'2GB', '500MiB', '1.5g' or an int -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 2GB or 500MiB")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("size must be >= 0")
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; use a number of bytes or e.g. 2GB, 500MiB")
    unit = (match.group(2) or "").lower().rstrip("b")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(Section):
    dir: str | None = None
    shards: list[str] = Field(default_factory=list)
    shards_file: str | None = None
    extensions: list[str] = Field(
        default_factory=lambda: [".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"])
    parts: int | None = Field(default=None, ge=1)
    part_size: int = 2 * 1000**3
    shards_per_part: int = Field(default=1, ge=1)

    _norm_size = field_validator("part_size", mode="before")(lambda cls, v: parse_bytes(v))

    @field_validator("extensions")
    @classmethod
    def _dotted_lower(cls, value: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else "." + e.lower() for e in value]

    @model_validator(mode="after")
    def _one_source(self) -> "InputConfig":
        given = [name for name, v in (("dir", self.dir), ("shards", self.shards),
                                      ("shards_file", self.shards_file)) if v]
        if len(given) > 1:
            raise ValueError(f"give exactly one of input.dir, input.shards, input.shards_file (got {', '.join(given)})")
        return self

    def has_source(self) -> bool:
        return bool(self.dir or self.shards or self.shards_file)


class StageSection(Section):
    enabled: bool = True


class FetchConfig(StageSection):
    max_archive_bytes: int = 50 * 1000**3
    max_archive_members: int = Field(default=100_000, ge=1)

    _norm_size = field_validator("max_archive_bytes", mode="before")(lambda cls, v: parse_bytes(v))


class SplitConfig(StageSection):
    kind: Literal["pyscenedetect", "transnetv2"] = "pyscenedetect"
    threshold: float = Field(default=3.0, gt=0)
    min_scene_len: int = Field(default=15, ge=1)
    downscale: int = Field(default=0, ge=0)
    transnet_threshold: float = Field(default=0.5, gt=0, lt=1)
    device: str = "cpu"
    batch_size: int = Field(default=4, ge=1)
    flash_guard: bool = True
    flash_max_frames: int = Field(default=8, ge=1)
    flash_brightness_delta: float = Field(default=40.0, gt=0)
    min_s: float = Field(default=1.0, gt=0)
    max_s: float = Field(default=10.0, gt=0)
    cut: bool = False
    cut_mode: Literal["reencode", "copy"] = "reencode"
    crf: int = Field(default=20, ge=0, le=51)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "cpu" and not re.match(r"^cuda(:\d+)?$", v):
            raise ValueError("use cpu, cuda or cuda:N")
        return v

    @model_validator(mode="after")
    def _range(self) -> "SplitConfig":
        if self.max_s < self.min_s:
            raise ValueError(f"split.max_s ({self.max_s}) must be >= split.min_s ({self.min_s})")
        return self


def Decision(default, **kw):
    """A threshold: used when deciding keep/drop at export, so it is not part of the stage's
    fingerprint (changing it re-runs no analyzer), unless the cascade uses it to skip work."""
    return Field(default=default, json_schema_extra={"decision": True}, **kw)


def fingerprint_fields(section: BaseModel, with_decisions: bool) -> dict:
    out = {}
    for name, field in type(section).model_fields.items():
        if not with_decisions and (field.json_schema_extra or {}).get("decision"):
            continue
        value = getattr(section, name)
        out[name] = fingerprint_fields(value, with_decisions) if isinstance(value, BaseModel) else value
    return json.loads(json.dumps(out, default=str))


class FlashFilter(Section):
    enabled: bool = True
    sample_stride: int = Field(default=1, ge=1)
    brightness_delta: float = Field(default=40.0, gt=0)
    return_frames: int = Field(default=4, ge=1)
    max_flash_ratio: float = Decision(0.02, ge=0, le=1)
    record_only: bool = Decision(False)


class MotionFilter(Section):
    enabled: bool = True
    pairs_per_s: float = Field(default=2.0, gt=0)
    size: int = Field(default=160, ge=16)
    method: Literal["dis", "farneback"] = "dis"
    min_score: float = Decision(0.0005, ge=0)
    max_score: float | None = Decision(None, gt=0)
    record_only: bool = Decision(False)


class OcrFilter(Section):
    enabled: bool = True
    sample_every_s: float = Field(default=2.0, gt=0)
    size: int = Field(default=360, ge=32)
    recognize: bool = True
    lang: str = "ch"
    use_gpu: bool = False
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    text_area_threshold: float = Decision(0.02, ge=0, le=1)
    record_only: bool = Decision(False)


class NsfwFilter(Section):
    enabled: bool = True
    sample_every_s: float = Field(default=2.0, gt=0)
    threshold: float = Decision(0.8, ge=0, le=1)
    record_only: bool = Decision(False)


class FilterConfig(StageSection):
    cascade: bool = False
    min_duration_s: float | None = Decision(None, ge=0)
    max_duration_s: float | None = Decision(None, gt=0)
    min_short_side: int | None = Decision(None, ge=1)
    flash: FlashFilter = Field(default_factory=FlashFilter)
    motion: MotionFilter = Field(default_factory=MotionFilter)
    ocr: OcrFilter = Field(default_factory=OcrFilter)
    nsfw: NsfwFilter = Field(default_factory=NsfwFilter)


class ClipsConfig(Section):
    """Clip files for the kept clips, written by export (decisions are only known then)."""

    enabled: bool = False
    mode: Literal["reencode", "copy"] = "reencode"
    resize: Literal["none", "720p", "512", "256"] = "none"
    fit: Literal["crop", "pad"] = "crop"
    codec: Literal["libx264", "libx265", "libvpx-vp9"] = "libx264"
    crf: int = Field(default=20, ge=0, le=63)
    preset: str = "veryfast"


class LocalConfig(Section):
    workers: int = Field(default=2, ge=1)


_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_SLURM_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)


class SlurmResources(Section):
    """sbatch resources; None means 'not set here' so profiles and overrides can be layered."""

    partition: str | None = None
    cpus: int | None = Field(default=None, ge=1)
    mem: str | None = None
    gres: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: list[str] | None = None
    throttle: int | None = Field(default=None, ge=1)
    signal_s: int | None = Field(default=None, ge=0)

    @field_validator("time")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None and not _SLURM_TIME.match(str(v)):
            raise ValueError("use a Slurm time: MM, MM:SS, HH:MM:SS or D-HH:MM:SS")
        return v

    @field_validator("mem", mode="before")
    @classmethod
    def _mem(cls, v):
        if v is not None and not _SLURM_MEM.match(str(v)):
            raise ValueError("use a Slurm memory size such as 4000M or 16G")
        return None if v is None else str(v)


class SlurmConfig(Section):
    profile: str = "default"
    python: str | None = None
    setup: list[str] = Field(default_factory=list)
    defaults: SlurmResources = Field(default_factory=SlurmResources)
    stages: dict[str, SlurmResources] = Field(default_factory=dict)
    max_array_size: int | None = Field(default=None, ge=1)


class Config(Section):
    input: InputConfig = Field(default_factory=InputConfig)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    workdir: str | None = None

    @model_validator(mode="after")
    def _known_slurm_stages(self) -> "Config":
        from stages import STAGE_ORDER

        unknown = sorted(set(self.slurm.stages) - set(STAGE_ORDER))
        if unknown:
            raise ValueError(f"slurm.stages: unknown stage {', '.join(unknown)}; stages are {', '.join(STAGE_ORDER)}")
        return self

    def stage_section(self, stage: str) -> StageSection:
        return getattr(self, stage)

    def to_plain(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        return f"{key}: unknown key; allowed here: {', '.join(allowed)}"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" = {value!r}"
    msg = error["msg"].removeprefix("Value error, ")
    return f"{key}{shown}: {msg}"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def validate_config(data: dict[str, Any] | None, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (input:, split:, ...), got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, Config) for e in exc.errors()]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(lines)
                          + "\nSee config.example.yaml for every key and its allowed values.") from None


def load_config(path: str | Path | None) -> Config:
    """Read and validate a YAML config; None gives the defaults."""
    if path is None:
        return validate_config({})
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; copy config.example.yaml and edit it")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return validate_config(data, source=str(path))


def stable_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
