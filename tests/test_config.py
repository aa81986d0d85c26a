import pytest
from conftest import curate, write_config

from curate.config import load_config, parse_bytes, validate_config
from curate.errors import ConfigError


def test_defaults_are_valid():
    cfg = validate_config({})
    assert cfg.split.min_s == 1.0 and cfg.split.max_s == 10.0
    assert cfg.input.part_size == 2 * 1000**3


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        validate_config({"split": {"treshold": 2}})
    msg = str(err.value)
    assert "split.treshold: unknown key" in msg
    assert "threshold" in msg and "min_scene_len" in msg


def test_bad_value_names_key_value_and_rule():
    with pytest.raises(ConfigError) as err:
        validate_config({"split": {"min_s": -1, "kind": "gstreamer"}})
    msg = str(err.value)
    assert "split.min_s = -1" in msg and "greater than 0" in msg
    assert "split.kind = 'gstreamer'" in msg and "'pyscenedetect'" in msg and "'transnetv2'" in msg


def test_cross_field_rule():
    with pytest.raises(ConfigError, match=r"max_s \(1.0\) must be >= split.min_s \(2.0\)"):
        validate_config({"split": {"min_s": 2, "max_s": 1}})


def test_one_input_source():
    with pytest.raises(ConfigError, match="exactly one of input.dir"):
        validate_config({"input": {"dir": "/x", "shards": ["a.tar"]}})


@pytest.mark.parametrize("text,expected", [("2GB", 2 * 10**9), ("500MiB", 500 * 2**20), ("1.5k", 1500), (42, 42)])
def test_sizes(text, expected):
    assert parse_bytes(text) == expected


def test_bad_size():
    with pytest.raises(ConfigError, match="input.part_size"):
        validate_config({"input": {"part_size": "lots"}})


def test_example_config_is_valid_and_documented():
    from conftest import REPO

    cfg = load_config(REPO / "config.example.yaml")
    text = (REPO / "config.example.yaml").read_text()
    # every key of every section appears in the example with a comment
    for section, model in cfg:
        if section == "workdir":
            assert "\nworkdir:" in text
            continue
        for key in type(model).model_fields:
            line = next((ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:")), None)
            assert line is not None, f"{section}.{key} missing from config.example.yaml"


def test_bad_config_stops_before_any_work(tmp_path, workdir):
    cfg = write_config(tmp_path / "c.yaml", "split:\n  min_s: zero\n")
    proc = curate("local", "-w", workdir, "-i", tmp_path, "-c", cfg, check=False)
    assert proc.returncode == 2
    assert "split.min_s = 'zero'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not workdir.exists()


def test_yaml_syntax_error(tmp_path, workdir):
    cfg = write_config(tmp_path / "c.yaml", "split: [unclosed\n")
    proc = curate("local", "-w", workdir, "-i", tmp_path, "-c", cfg, check=False)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and "Traceback" not in proc.stderr


def _bomb(levels: int, width: int = 9) -> str:
    """A "billion laughs" document: a few hundred bytes that aliases expand to width**levels strings."""
    lines = ["caption:", "  extra_body:", '    l0: &l0 "lol"']
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused(tmp_path, workdir):
    text = _bomb(7)  # ~19 MB expanded; 9 levels (GBs) are refused just as fast
    assert len(text) < 600
    cfg = write_config(tmp_path / "c.yaml", text)
    proc = curate("local", "-w", workdir, "-i", tmp_path, "-c", cfg, check=False, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "aliases" in proc.stderr and "expand" in proc.stderr
    with pytest.raises(ConfigError, match="aliases"):
        load_config(write_config(tmp_path / "big.yaml", _bomb(9)))


def test_yaml_aliases_within_bound_still_work(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", "slurm:\n  defaults: &d {cpus: 4}\n"
                                                        "  stages: {split: *d, filter: {<<: *d, cpus: 8}}\n"))
    assert cfg.slurm.stages["split"].cpus == 4 and cfg.slurm.stages["filter"].cpus == 8


@pytest.mark.parametrize("text,key", [
    ("local:\n  workers: 2\n  workers: 3\n", "duplicate key 'workers'"),
    ("split:\n  min_s: 1\nsplit:\n  max_s: 5\n", "duplicate key 'split'"),
    ("split:\n  max_s: .inf\n", "split.max_s"),
    ("caption:\n  timeout_s: .inf\n", "caption.timeout_s"),
    ("input:\n  part_size: .inf\n", "input.part_size"),
    ("local:\n  workers: 12345678901234567890123456789\n", "local.workers"),
    ("input:\n  parts: 12345678901234567890123456789\n", "input.parts"),
    ("slurm:\n  max_requeues: 12345678901234567890123456789\n", "slurm.max_requeues"),
], ids=["dup-key", "dup-section", "inf", "inf-seconds", "inf-size", "huge-workers", "huge-parts", "huge-any-int"])
def test_silently_odd_values_are_refused(tmp_path, workdir, text, key):
    cfg = write_config(tmp_path / "c.yaml", text)
    proc = curate("local", "-w", workdir, "-i", tmp_path, "-c", cfg, check=False)
    assert proc.returncode == 2, proc.stdout
    assert key in proc.stderr and "Traceback" not in proc.stderr
    assert not workdir.exists()
