"""Slurm submission planning that needs no cluster: array specs, chunking, resources, scripts, --dry-run."""

import re

import pytest
from conftest import curate, write_config

from curate.arrayspec import compact, parse_spec
from curate.config import validate_config
from curate.errors import ConfigError, CurateError
from curate.executors.slurm import Chunk, render_script, resources_for, split_into_chunks
from curate.rundir import RunDir


def test_array_spec_roundtrip():
    assert parse_spec("0-4,7,10-12%3") == ([0, 1, 2, 3, 4, 7, 10, 11, 12], 3)
    assert parse_spec("0-10:5") == ([0, 5, 10], None)
    assert compact([3, 17, 40, 41, 42, 43, 44, 45]) == "3,17,40-45"
    assert compact(parse_spec("5,1-3,2")[0]) == "1-3,5"
    for bad in ("", "3-1", "a-b", "1-3%0"):
        with pytest.raises(CurateError):
            parse_spec(bad)


def test_chunks_keep_task_ids_below_max_array_size():
    chunks = split_into_chunks(list(range(1000)), 300)
    assert [(c.offset, c.array) for c in chunks] == [(0, "0-299"), (300, "0-299"), (600, "0-299"), (900, "0-99")]
    assert [i for c in chunks for i in c.indices] == list(range(1000))
    gapped = split_into_chunks([3, 17, 299, 300, 301, 950], 300)
    assert [(c.offset, c.array) for c in gapped] == [(0, "3,17,299"), (300, "0-1"), (900, "50")]


def test_resources_layer_profile_then_config():
    cfg = validate_config({"slurm": {"defaults": {"partition": "gpu", "account": "proj"},
                                     "stages": {"split": {"mem": "16G", "extra": ["--exclusive"], "throttle": 50}}}})
    split = resources_for(cfg, "split")
    assert (split.partition, split.account, split.mem, split.cpus, split.time) == ("gpu", "proj", "16G", 2, "02:00:00")
    assert split.extra == ["--exclusive"] and split.throttle == 50
    fetch = resources_for(cfg, "fetch")
    assert (fetch.mem, fetch.time, fetch.throttle) == ("2G", "00:30:00", None)


def test_bad_slurm_config_names_the_key():
    with pytest.raises(ConfigError, match=r"slurm.stages.split.time = '2 hours'"):
        validate_config({"slurm": {"stages": {"split": {"time": "2 hours"}}}})
    with pytest.raises(ConfigError, match="unknown stage splitt"):
        validate_config({"slurm": {"stages": {"splitt": {"mem": "4G"}}}})
    with pytest.raises(CurateError, match="slurm.profile 'nope'"):
        resources_for(validate_config({"slurm": {"profile": "nope"}}), "split")


def test_script_contents(tmp_path):
    cfg = validate_config({"slurm": {"stages": {"split": {"gres": "gpu:1", "qos": "high", "constraint": "a100",
                                                          "extra": ["--exclusive"], "throttle": 8}}}})
    run = RunDir.at(tmp_path)
    script = render_script(run, "split", Chunk(300, [0, 1, 2, 5]), resources_for(cfg, "split"),
                           tmp_path / "plan.yaml", "/env/bin/python", ["module load ffmpeg"], "1234", "sub1")
    lines = script.splitlines()
    for expected in ("#SBATCH --job-name=curate-split", "#SBATCH --array=0-2,5%8",
                     f"#SBATCH --output={tmp_path}/logs/split/%A_%a.out", "#SBATCH --open-mode=append",
                     "#SBATCH --gres=gpu:1", "#SBATCH --qos=high", "#SBATCH --constraint=a100", "#SBATCH --exclusive",
                     "#SBATCH --signal=B:USR1@120", "#SBATCH --dependency=aftercorr:1234",
                     "#SBATCH --kill-on-invalid-dep=yes", "module load ffmpeg",
                     "CURATE_INDEX=$((SLURM_ARRAY_TASK_ID + 300))"):
        assert expected in lines, expected
    assert f"-m curate run --workdir {tmp_path} --stage split --plan {tmp_path}/plan.yaml" in script
    assert "scontrol requeue" in script and "pickle" not in script


def test_dry_run_prints_every_chunk_chained(tmp_path):
    videos = tmp_path / "in"
    videos.mkdir()
    for i in range(1000):
        (videos / f"v{i:04d}.mp4").write_bytes(b"")  # the manifest only needs names and sizes
    cfg = write_config(tmp_path / "c.yaml", "slurm:\n  max_array_size: 300\n")
    out = curate("submit", "-c", cfg, "-w", tmp_path / "run", "-i", videos, "--parts", "1000",
                 "--array", "0-999%40", "--dry-run").stdout
    arrays = re.findall(r"^#SBATCH --array=(.*)$", out, re.MULTILINE)
    assert arrays == ["0-299%40", "0-299%40", "0-299%40", "0-99%40"] * 4  # fetch, split, filter, score
    deps = re.findall(r"^#SBATCH --dependency=aftercorr:(.*)$", out, re.MULTILINE)
    assert deps == [f"<job id of {stage} chunk {n}>" for stage in ("fetch", "split", "filter") for n in range(4)]
    assert out.count("CURATE_INDEX=$((SLURM_ARRAY_TASK_ID + 900))") == 4
    assert "--gres" not in out  # every default model runs on the CPU: no stage asks for a GPU
    assert out.count("#SBATCH --cpus-per-task=4") == 4 and out.count("#SBATCH --mem=16G") == 4  # score's own need
    assert not (tmp_path / "run" / "submissions").exists()
    proc = curate("submit", "-c", cfg, "-w", tmp_path / "run", "--array", "990-1005", "--dry-run", check=False)
    assert proc.returncode == 2 and "outside this run's manifest (0-999)" in proc.stderr


def test_submit_without_slurm_is_a_clear_error(tmp_path, monkeypatch):
    videos = tmp_path / "in"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"")
    proc = curate("submit", "-w", tmp_path / "run", "-i", videos, check=False,
                  env={"PATH": "/usr/bin/nonexistent:" + str(tmp_path)})
    assert proc.returncode == 2 and "not found" in proc.stderr and "curate local" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_paths_and_values_with_spaces_are_quoted(tmp_path):
    cfg = validate_config({"slurm": {"stages": {"split": {"partition": "gpu", "constraint": "a100|h100",
                                                          "account": 'my "team"'}}}})
    run = RunDir.at(tmp_path / "run dir")
    script = render_script(run, "split", Chunk(0, [0]), resources_for(cfg, "split"),
                           run.root / "submissions" / "s" / "plan.yaml", "/opt/my env/bin/python", [], None, "s")
    lines = script.splitlines()
    logs = f"{tmp_path}/run dir/logs/split"
    for expected in (f'#SBATCH --output="{logs}/%A_%a.out"', f'#SBATCH --error="{logs}/%A_%a.err"',
                     "#SBATCH --partition=gpu", '#SBATCH --constraint="a100|h100"',
                     '#SBATCH --account="my \\"team\\""'):
        assert expected in lines, expected
    assert f"'/opt/my env/bin/python' -m curate run --workdir '{tmp_path}/run dir'" in script


def test_shipped_profiles_are_package_data(tmp_path):
    """A non-editable install finds slurm/default.yaml: the wheel carries it as curate/profiles."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from conftest import REPO

    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        if name.startswith(("curate/", "stages/", "slurm/")) or name in ("pyproject.toml", "README.md"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("curate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"curate/profiles/default.yaml", "curate/profiles/local-test.yaml"} <= set(names)
    assert "stages/analyzers/ocr.py" in names and "curate/executors/slurm.py" in names and "curate/cli/app.py" in names
    # Loading a profile uses the installed package, not a path into the source tree.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("from curate.executors.slurm import load_profile, profile_dir; "
            "print(profile_dir()); print(load_profile('default')['stages']['split'].time)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == [str(target / "curate" / "profiles"), "02:00:00"]
