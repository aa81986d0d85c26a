"""A thresholds file: the [threshold] keys of a config, alone, applied over a run's config.

`curate calibrate --thresholds F` previews them and `curate export --thresholds F` applies them:
thresholds are decided at export from stored scores, so neither reruns anything. Any other key
is refused, because changing it means different scores, which only a rerun gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .errors import ConfigError


def _walk(model: BaseModel, doc: dict, prefix: str, source: str) -> None:
    for key, value in doc.items():
        field = type(model).model_fields.get(key)
        if field is None:
            raise ConfigError(f"{source}: {prefix}{key} is not a config key")
        current = getattr(model, key)
        if isinstance(current, BaseModel):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {prefix}{key} is a section; give its thresholds under it")
            _walk(current, value, f"{prefix}{key}.", source)
        elif f"{prefix}{key}".startswith("clips."):  # how files are written, not what is kept
            raise ConfigError(f"{source}: {prefix}{key} is not a threshold but how clip files are written; give it "
                              "to export as --resize/--fit/--fps, or as a clips: section in `export --config F`")
        elif not (field.json_schema_extra or {}).get("decision"):
            raise ConfigError(f"{source}: {prefix}{key} is not a threshold (the [threshold] keys of "
                              "config.example.yaml); it changes the scores, so set it in the config and rerun")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def with_thresholds(config, path: Path):
    """The config with the thresholds of the YAML file at `path` in place of its own."""
    from .config import load_yaml, validate_config

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"thresholds file {path} does not exist")
    doc: Any = load_yaml(path.read_text(), str(path))
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected sections with thresholds, e.g. filter: {{motion: {{min_score: 0.001}}}}")
    _walk(config, doc, "", str(path))
    return validate_config(_merge(config.to_plain(), doc), source=str(path))
