"""Setting up a run from what a command was given: config, manifest, run.yaml. No stage work.

Which stages an invocation runs comes from the stage registry (each class says whether
calibration runs it and whether it publishes), never from stage names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from stages import STAGES

from .config import load_config
from .errors import CurateError
from .manifest import write_manifest
from .plan import Plan, load_plan, write_plan
from .rundir import RunDir


def skipped_stages(calibration: bool, skip_upload: bool) -> tuple[str, ...]:
    """Stages --calibration / --skip-upload leave out of this run's plan."""
    if not (calibration or skip_upload):
        return ()  # no stage module to load
    classes = {name: spec.load() for name, spec in STAGES.items()}
    return tuple(name for name, cls in classes.items()
                 if (calibration and not cls.in_calibration) or (skip_upload and cls.publishes))


def stage_list(plan: Plan, stage: str) -> list[str]:
    """`--stage all` or `--stage a,b` as the plan's stages, in pipeline order."""
    if stage == "all":
        return plan.stages
    chosen = [s.strip() for s in stage.split(",") if s.strip()]
    for s in chosen:
        plan.check_stage(s)
    return [s for s in plan.stages if s in chosen]


def prepare_run(workdir: Optional[Path], config: Optional[Path], input_dir: Optional[Path], rebuild: bool,
                parts: Optional[int] = None, part_size: Optional[str] = None, config_obj=None,
                skip_stages: tuple[str, ...] = ()) -> tuple[RunDir, Plan, dict]:
    """Load + validate config, build (or reuse) the manifest, freeze run.yaml. No stage work."""
    cfg = config_obj if config_obj is not None else (load_config(config) if config is not None else None)
    if workdir is None:
        if cfg is None or not cfg.workdir:
            raise CurateError("no run directory: pass --workdir DIR or set `workdir:` in the config")
        workdir = Path(cfg.workdir)
    run = RunDir.at(workdir)
    if cfg is None:
        # `curate local -w W` alone resumes the run as it was set up
        cfg = load_plan(run).config if input_dir is None and run.run_yaml.is_file() else load_config(None)
    elif input_dir is None and not cfg.input.has_source() and run.run_yaml.is_file():
        cfg.input = load_plan(run).config.input  # a new config for an existing run keeps its input
    if input_dir is not None:
        cfg.input.shards, cfg.input.shards_file, cfg.input.hf_repo, cfg.input.pattern = [], None, None, None
        cfg.input.dir = str(input_dir.expanduser().resolve())
    if parts is not None:
        cfg.input.parts = parts
    if part_size is not None:
        cfg.input.part_size = part_size
    for name in skip_stages:  # --skip-upload, --calibration: these stages are left out of this run's plan
        cfg.stage_section(name).enabled = False
    if not cfg.input.has_source():
        raise CurateError("no input given: pass --input-dir DIR or set input.dir, input.hf_repo or input.shards "
                          "in the config")
    cfg.workdir = str(run.root)
    run.root.mkdir(parents=True, exist_ok=True)
    info = write_manifest(run, cfg.input, rebuild=rebuild)
    write_plan(run.run_yaml, cfg, info)
    return run, load_plan(run), info
