"""The plug-in shape: `curate/` reaches stages, analyzers and scorers only through the registries,
and what a plug-in declares (resources, models, columns) is what the orchestration uses."""

from __future__ import annotations

import ast
import json
import shutil

from conftest import REPO, curate, write_config

from curate.config import validate_config
from curate.errors import ExitCode, exit_code_table
from curate.executors.local import GpuSlots
from curate.executors.slurm import resources_for
from stages import STAGES
from stages.analyzers import ANALYZERS
from stages.scorers import SCORERS

PLUGINS = set(STAGES) | set(ANALYZERS) | set(SCORERS) | {"classifier", "classifiers"}
ALLOWED_STAGE_MODULES = {"stages", "stages.base"}  # the registry and the plug-in base, nothing specific


def plugin_references(source: str, where: str) -> list[str]:
    """Every place in a module of curate/ that names a plug-in instead of asking a registry."""
    found = []
    for node in ast.walk(ast.parse(source)):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("stages"):
            if node.module not in ALLOWED_STAGE_MODULES:
                found.append(f"{at} imports {node.module}")
        elif isinstance(node, ast.Import):
            found += [f"{at} imports {a.name}" for a in node.names
                      if a.name.startswith("stages") and a.name not in ALLOWED_STAGE_MODULES]
        elif isinstance(node, ast.Attribute) and node.attr in PLUGINS:
            owner = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", None)
            if owner in ("config", "cfg"):  # config.split, plan.config.upload, ...
                found.append(f"{at} reads config.{node.attr}")
        elif isinstance(node, (ast.Compare, ast.Subscript)):
            parts = [node.slice] if isinstance(node, ast.Subscript) else [node.left, *node.comparators]
            found += [f"{at} names {p.value!r}" for p in parts if isinstance(p, ast.Constant) and p.value in PLUGINS]
    return found


def test_orchestration_names_no_plugin():
    found = [f for path in sorted((REPO / "curate").rglob("*.py"))
             for f in plugin_references(path.read_text(), str(path.relative_to(REPO)))]
    assert not found, "curate/ must go through the registries:\n" + "\n".join(found)


def test_the_scan_finds_each_way_of_naming_a_plugin():
    sample = ('from stages.split import cut_clip\nimport stages.filter\nx = plan.config.upload\n'
              'if "caption" in plan.stages:\n    y = STAGES["score"]\nfrom stages import STAGES\n')
    assert len(plugin_references(sample, "sample")) == 5


def test_gpus_follow_the_devices_a_config_uses():
    cpu = validate_config({})
    assert resources_for(cpu, "score").gres is None and resources_for(cpu, "filter").gres is None
    assert resources_for(validate_config({"score": {"quality": {"device": "cuda"}}}), "score").gres is None  # CPU only
    one = validate_config({"score": {"classifiers": [{"model": "m", "label": "w", "device": "cuda"}]}})
    assert resources_for(one, "score").gres == "gpu:1"
    two = validate_config({"score": {"laion_aes": {"enabled": True, "device": "cuda:1"},
                                     "classifiers": [{"model": "m", "label": "w", "device": "cuda:0"}]}})
    assert resources_for(two, "score").gres == "gpu:2"
    ocr = validate_config({"filter": {"ocr": {"device": "cuda"}}})
    assert resources_for(ocr, "filter").gres == "gpu:1"
    # the profile and the config still override what the stage declares
    pinned = validate_config({"score": {"classifiers": [{"model": "m", "label": "w", "device": "cuda"}]},
                              "slurm": {"stages": {"score": {"gres": "gpu:a100:1", "cpus": 6}}}})
    assert resources_for(pinned, "score").gres == "gpu:a100:1" and resources_for(pinned, "score").cpus == 6
    assert resources_for(validate_config({"slurm": {"profile": "gpu-node"}}), "score").gres == "gpu:2"


def test_gpu_slots_never_share_a_device():
    slots = GpuSlots(["0", "1"])
    assert slots.take(0) == []
    first, second = slots.take(1), slots.take(1)
    assert {first[0], second[0]} == {"0", "1"}
    assert slots.take(1) is None  # both busy: wait
    slots.give_back(1, first)
    assert slots.take(1) == first
    none_here = GpuSlots([])
    assert none_here.take(1) == [] and none_here.take(1) is None  # one at a time; its preflight explains


def test_a_stage_that_needs_a_gpu_here_without_one_stops_with_the_reason(tmp_path):
    """`curate local` on a machine without the GPU a stage declares stops before any stage runs
    and says why (the preflight of every stage comes first)."""
    (tmp_path / "in").mkdir()
    shutil.copy(REPO / "samples" / "flash_3.mp4", tmp_path / "in")
    cfg = write_config(tmp_path / "c.yaml", "score:\n  classifiers: [{model: m, label: w, device: cuda}]\n"
                                           "filter: {ocr: {enabled: false}, nsfw: {enabled: false}}\n")
    proc = curate("local", "-w", tmp_path / "run", "-i", tmp_path / "in", "-c", cfg, "--no-progress", "--json",
                  check=False, env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == ExitCode.USAGE and "Traceback" not in proc.stderr
    assert "score.classifiers[0].device = cuda, but torch sees no CUDA device" in proc.stderr
    assert not list((tmp_path / "run").glob("markers/*/*.done"))


def test_models_come_from_every_stage():
    rows = {r["model"]: r for r in json.loads(curate("models", "--json", check=False).stdout)}
    assert {"split: transnetv2", "filter.ocr", "filter.nsfw", "score.quality"} <= set(rows)
    assert rows["filter.ocr"]["found"] and rows["score.quality"]["where"] == "weight-free"


def test_calibration_and_skip_upload_read_the_stage_classes():
    assert [n for n, s in STAGES.items() if not s.load().in_calibration] == ["caption", "upload"]
    assert [n for n, s in STAGES.items() if s.load().publishes] == ["upload"]


def test_readme_exit_codes_are_the_enum():
    assert exit_code_table() in (REPO / "README.md").read_text()
