"""The run configuration: one YAML file validated into typed objects.

Every section forbids unknown keys, so a typo is an error that names the key instead of
a silently ignored setting. Run-wide sections live here; each stage's section is its own
config model, taken from the stage registry (stages/__init__.py). Secrets never live here:
they are read from the environment (curate.secrets).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .rundir import INDEX_WIDTH
from .sections import Section, StageSection, parse_bytes, subsections


class InputConfig(Section):
    dir: str | None = None
    # A Hugging Face dataset: its files matching `pattern`, or those listed in shards / shards_file
    # (paths inside the repo), are the units; each task downloads its own.
    hf_repo: str | None = None
    revision: str = "main"
    pattern: str | None = None
    shards: list[str] = Field(default_factory=list)
    shards_file: str | None = None
    extensions: list[str] = Field(
        default_factory=lambda: [".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"])
    parts: int | None = Field(default=None, ge=1, le=10**INDEX_WIDTH)  # part names have INDEX_WIDTH digits
    part_size: int = 2 * 1000**3
    shards_per_part: int = Field(default=1, ge=1)

    _norm_size = field_validator("part_size", mode="before")(lambda cls, v: parse_bytes(v))

    @field_validator("extensions")
    @classmethod
    def _dotted_lower(cls, value: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else "." + e.lower() for e in value]

    @model_validator(mode="after")
    def _one_source(self) -> InputConfig:
        given = [name for name, v in (("dir", self.dir), ("shards", self.shards),
                                      ("shards_file", self.shards_file)) if v]
        if self.hf_repo:
            if self.dir:
                raise ValueError("give input.dir or input.hf_repo, not both")
            if self.pattern and len(given) or len(given) > 1:
                raise ValueError("with input.hf_repo, pick its files with one of input.pattern, input.shards, "
                                 "input.shards_file")
        elif self.pattern:
            raise ValueError("input.pattern selects files of input.hf_repo; set input.hf_repo too")
        elif len(given) > 1:
            raise ValueError(f"give exactly one of input.dir, input.shards, input.shards_file (got {', '.join(given)})")
        return self

    def has_source(self) -> bool:
        return bool(self.dir or self.shards or self.shards_file or self.hf_repo)


class ClipsConfig(Section):
    """Clip files for the kept clips, written by export (decisions are only known then)."""

    enabled: bool = False
    mode: Literal["reencode", "copy"] = "reencode"
    resize: Literal["none", "720p", "512", "256"] = "none"
    fit: Literal["crop", "pad"] = "crop"
    codec: Literal["libx264", "libx265", "libvpx-vp9"] = "libx264"
    crf: int = Field(default=20, ge=0, le=63)
    preset: str = "veryfast"
    fps: float | None = Field(default=None, gt=0)  # cap the frame rate of written clips (null: keep)
    audio: Literal["keep", "drop"] = "keep"  # keep: AAC when re-encoded, copied when copied; drop: video only


class LocalConfig(Section):
    workers: int = Field(default=2, ge=1, le=1024)


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
    # A task stopped at its time limit (or preempted) is requeued at most this many times.
    max_requeues: int = Field(default=3, ge=0)


class RunConfig(Section):
    input: InputConfig = Field(default_factory=InputConfig)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    workdir: str | None = None

    @model_validator(mode="after")
    def _known_slurm_stages(self) -> RunConfig:
        from stages import STAGE_ORDER

        unknown = sorted(set(self.slurm.stages) - set(STAGE_ORDER) - {"merge"})
        if unknown:
            raise ValueError(f"slurm.stages: unknown stage {', '.join(unknown)}; stages are "
                             f"{', '.join(STAGE_ORDER)} (and merge, the final-table job)")
        return self

    def stage_section(self, stage: str) -> StageSection:
        return getattr(self, stage)

    def to_plain(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _compose() -> type[RunConfig]:
    from stages import STAGES

    return subsections("Config", RunConfig, {name: spec.config_model() for name, spec in STAGES.items()})


# The whole config: run-wide sections plus one section per registered stage.
Config = _compose()


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
        config = Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e, Config) for e in exc.errors()]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(lines)
                          + "\nSee config.example.yaml for every key and its allowed values.") from None
    from stages import STAGES

    from .secrets import register

    for name in STAGES:  # a stage that reads a key from a variable of the user's choice
        register(getattr(config.stage_section(name), "api_key_env", None))
    return config


# What aliases may expand a YAML document to, beyond its own length: a few legitimate `&defaults`
# references fit easily, a "billion laughs" document (a few hundred bytes, GBs expanded) does not.
_YAML_ALIAS_ALLOWANCE = 10_000_000


@functools.cache
def _strict_loader() -> type:
    """A SafeLoader that rejects duplicate keys (plain YAML silently keeps the last one); on libyaml's C
    parser where PyYAML has it (10x faster: every task reads run.yaml)."""
    import yaml

    class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` may be overridden by the keys beside it
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if duplicate:
                    mark = key_node.start_mark
                    raise ConfigError(f"duplicate key {key!r} (line {mark.line + 1}, column {mark.column + 1}); "
                                      "each key may appear once per section")
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictLoader


def _expanded_size(node: Any, memo: dict[int, int | None]) -> int:
    """Characters of a composed YAML node with every alias expanded; an alias node is shared, so memoized."""
    import yaml

    if id(node) in memo:
        size = memo[id(node)]
        if size is None:
            raise ConfigError(f"a YAML alias refers to its own anchor (line {node.start_mark.line + 1})")
        return size
    memo[id(node)] = None
    if isinstance(node, yaml.ScalarNode):
        size = 1 + len(node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, memo) for item in node.value)
    else:
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document strictly: no duplicate keys, no alias expansion beyond a bound."""
    import yaml

    loader = _strict_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > len(text) + _YAML_ALIAS_ALLOWANCE:
            raise ConfigError("YAML aliases (*name) expand it to more than "
                              f"{_YAML_ALIAS_ALLOWANCE // 1_000_000} MB more than the file; write the values out")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    finally:
        loader.dispose()


def load_config(path: str | Path | None) -> Config:
    """Read and validate a YAML config; None gives the defaults."""
    if path is None:
        return validate_config({})
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; copy config.example.yaml and edit it")
    return validate_config(load_yaml(path.read_text(), str(path)), source=str(path))
