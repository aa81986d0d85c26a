"""run.yaml: the frozen config of a run and the fingerprint of every enabled stage.

A stage's fingerprint hashes its own config, its code version and the fingerprint of the stage
before it, so changing one stage's settings redoes that stage and the later ones, never the
earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages import STAGE_ORDER, STAGES

from .config import Config, load_yaml, validate_config
from .errors import ConfigError, CurateError
from .hashing import stable_hash
from .rundir import RunDir, atomic_write_text, read_json
from .sections import fingerprint_fields


def enabled_stages(config: Config) -> list[str]:
    return [s for s in STAGE_ORDER if config.stage_section(s).enabled]


def stage_fingerprints(config: Config, manifest_fingerprint: str) -> dict[str, str]:
    fingerprints: dict[str, str] = {}
    upstream = manifest_fingerprint
    for stage in enabled_stages(config):
        section = config.stage_section(stage)
        section = fingerprint_fields(section, with_decisions=bool(getattr(section, "cascade", False)))
        inputs = STAGES[stage].load().fingerprint_inputs(config)
        upstream = stable_hash({"stage": stage, "version": STAGES[stage].version, "config": section,
                                "upstream": upstream, **({"inputs": inputs} if inputs else {})})
        fingerprints[stage] = upstream
    return fingerprints


@dataclass(frozen=True)
class Plan:
    config: Config
    fingerprints: dict[str, str]
    num_parts: int
    path: Path

    @property
    def stages(self) -> list[str]:
        return list(self.fingerprints)

    def upstream_of(self, stage: str) -> str | None:
        order = self.stages
        i = order.index(stage)
        return order[i - 1] if i > 0 else None

    def check_stage(self, stage: str) -> None:
        if stage not in self.fingerprints:
            known = ", ".join(self.stages)
            raise CurateError(f"stage {stage!r} is not enabled in this run (enabled: {known})")

    def check_index(self, index: int) -> None:
        if not 0 <= index < self.num_parts:
            raise CurateError(f"index {index} is outside this run's manifest (0-{self.num_parts - 1})")


def plan_document(config: Config, manifest_info: dict) -> dict:
    return {
        "config": config.to_plain(),
        "manifest_fingerprint": manifest_info["fingerprint"],
        "num_parts": manifest_info["num_parts"],
        "fingerprints": stage_fingerprints(config, manifest_info["fingerprint"]),
    }


def write_plan(path: Path, config: Config, manifest_info: dict) -> dict:
    import yaml

    doc = plan_document(config, manifest_info)
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
    return doc


def load_plan(run: RunDir, path: Path | None = None) -> Plan:
    path = path or run.require().run_yaml
    try:
        text = Path(path).read_text(errors="replace")  # bad bytes become a YAML error, not a traceback
    except FileNotFoundError:
        raise CurateError(f"plan {path} does not exist") from None
    try:
        doc = load_yaml(text, str(path))
        if not isinstance(doc, dict) or not isinstance(doc.get("fingerprints"), dict):
            raise ConfigError(f"{path} is not a curate plan (no `fingerprints:` mapping)")
        config = validate_config(doc.get("config"), source=str(path))
        num_parts = int(doc["num_parts"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        detail = exc if isinstance(exc, ConfigError) else f"{path} has a bad or missing num_parts ({exc})"
        raise CurateError(f"{detail}\nThe run's plan is damaged: run `curate manifest`, `local` or `submit` on this "
                          "run directory again with your config (-c) and input (-i, or input: in the config) to "
                          "write it again; finished work of unchanged stages is kept.") from None
    info = read_json(run.manifest_info) or {}
    if info.get("fingerprint") != doc.get("manifest_fingerprint"):
        raise CurateError(f"the manifest in {run.root} changed after {path} was written; "
                          "start the run again with `curate local` or `curate submit`")
    return Plan(config, dict(doc["fingerprints"]), num_parts, Path(path))
