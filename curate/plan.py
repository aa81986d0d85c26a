"""run.yaml: the frozen config of a run and the fingerprint of every enabled stage.

A stage's fingerprint hashes its own config, its code version and the fingerprint of the stage
before it, so changing one stage's settings redoes that stage and the later ones, never the
earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages import STAGE_ORDER, STAGES

from .config import Config, validate_config
from .errors import CurateError
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
    import yaml

    path = path or run.require().run_yaml
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise CurateError(f"plan {path} does not exist") from None
    config = validate_config(doc.get("config"), source=str(path))
    info = read_json(run.manifest_info) or {}
    if info.get("fingerprint") != doc.get("manifest_fingerprint"):
        raise CurateError(f"the manifest in {run.root} changed after {path} was written; "
                          "start the run again with `curate local` or `curate submit`")
    return Plan(config, dict(doc["fingerprints"]), int(doc["num_parts"]), Path(path))
