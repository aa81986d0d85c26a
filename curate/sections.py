"""Building blocks of every config section, light enough for any stage module to import.

Stage and analyzer modules define their own config models from these; `curate.config` composes
them through the stage registry, so adding a stage never edits the config module.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
               "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def parse_bytes(value: Any) -> int:
    """'2GB', '500MiB', '1.5g' or an int -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 2GB or 500MiB")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("size must be a finite number")
        if value < 0:
            raise ValueError("size must be >= 0")
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; use a number of bytes or e.g. 2GB, 500MiB")
    unit = (match.group(2) or "").lower().rstrip("b")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def _device(value: str) -> str:
    if value != "cpu" and not re.match(r"^cuda(:\d+)?$", value):
        raise ValueError("use cpu, cuda or cuda:N")
    return value


# The one device type of every model-backed setting.
Device = Annotated[str, AfterValidator(_device)]


# No setting is meaningfully larger (bytes, counts, seconds); a bigger number is a typo, and one
# past int64 breaks Slurm, parquet columns and C libraries far from the config that caused it.
MAX_INT = 10**15


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ValueError(f"too large (at most {MAX_INT:.0e} in absolute value)")
    if isinstance(value, (list, tuple, set)):
        for item in value:
            _bounded(item)
    elif isinstance(value, dict):
        for item in value.values():
            _bounded(item)
    return value


class Section(BaseModel):
    # allow_inf_nan=False: `.inf`/`.nan` are valid YAML floats but never a valid threshold or duration.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    _bound_ints = field_validator("*")(lambda cls, v: _bounded(v))


class StageSection(Section):
    enabled: bool = True


def Decision(default, **kw):
    """A threshold: used when deciding keep/drop at export, so it is not part of the stage's
    fingerprint (changing it re-runs no analyzer), unless the cascade uses it to skip work."""
    return Field(default=default, json_schema_extra={"decision": True}, **kw)


def Runtime(*default, **kw):
    """How a stage runs (workers, time-outs, budgets), not what it produces: never part of its
    fingerprint, so changing it never redoes finished work. Takes a default or default_factory=."""
    return Field(*default, json_schema_extra={"runtime": True}, **kw)


def fingerprint_fields(section: BaseModel, with_decisions: bool) -> dict:
    out = {}
    for name, field in type(section).model_fields.items():
        extra = field.json_schema_extra or {}
        if extra.get("runtime") or (not with_decisions and extra.get("decision")):
            continue
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            value = fingerprint_fields(value, with_decisions)
        elif isinstance(value, list):
            value = [fingerprint_fields(v, with_decisions) if isinstance(v, BaseModel) else v for v in value]
        out[name] = value
    return json.loads(json.dumps(out, default=str))


def subsections(name: str, base: type[BaseModel], parts: dict[str, type[BaseModel]]) -> type[BaseModel]:
    """A section model with one sub-section per registered part (analyzer, scorer, stage)."""
    from pydantic import create_model

    fields = {key: (model, Field(default_factory=model)) for key, model in parts.items()}
    return create_model(name, __base__=base, **fields)
