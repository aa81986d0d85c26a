"""The README's printed counts are the demo's: its `curate local` / `curate export` summary lines and its
`curate run` example are checked against the same commands run here on samples/.

When a change moves the counts (a new stage, a new check), the README is the one thing to update: run
`curate local --input-dir samples --workdir demo-run --parts 2` and paste the lines this test names.
"""

import ast
import re

import pytest
from conftest import REPO, SAMPLES, curate

README = (REPO / "README.md").read_text()
SUMMARY = re.compile(r"^(\d+) rows from (\d+) videos: (\d+) clips \(([\d.]+) min\); by status (\{.*\})$", re.M)
RUN_DONE = re.compile(r"^split\[1\] done in [\d.]+ s: (\d+) rows in, (\d+) out (\{.*\})$", re.M)


def _counts(found: list[tuple]) -> list[tuple]:
    """The matched lines with their last group (a printed dict) read as a dict: its order is not a count."""
    return [(*groups[:-1], ast.literal_eval(groups[-1])) for groups in found]


def _block_after(command: str) -> str:
    """The console block that starts with `$ command` in the README."""
    start = README.index(f"$ {command}\n")
    return README[start:README.index("```", start)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("readme") / "demo-run"
    local = curate("local", "--input-dir", SAMPLES, "--workdir", workdir, "--parts", "2", "--no-progress")
    return workdir, local.stdout


def test_quickstart_counts_are_the_demos(demo):
    _, out = demo
    [printed] = _counts(SUMMARY.findall(out))
    shown = _counts(SUMMARY.findall(_block_after("curate local --input-dir samples --workdir demo-run --parts 2")))
    assert shown == [printed], (f"README's `curate local` example says {shown}, the demo prints {printed}: "
                                "paste the demo's line into the README")
    exported = _counts(SUMMARY.findall(_block_after("curate export --workdir demo-run --format jsonl")))
    assert exported == [printed], f"README's `curate export` example says {exported}, the demo gives {printed}"


def test_run_example_counts_are_real(tmp_path):
    workdir = tmp_path / "demo-run"
    curate("manifest", "--input-dir", SAMPLES, "--workdir", workdir, "--parts", "2")
    curate("run", "--workdir", workdir, "--stage", "fetch", "--index", "1")
    out = curate("run", "--workdir", workdir, "--stage", "split", "--index", "1").stdout
    again = curate("run", "--workdir", workdir, "--stage", "split", "--index", "1").stdout
    shown = _block_after("curate run --workdir demo-run --stage split --index 1")
    assert _counts(RUN_DONE.findall(shown)) == _counts(RUN_DONE.findall(out)) != [], (shown, out)
    assert again.strip() in shown, (again, shown)


def test_every_command_has_help_that_renders_and_a_readme_entry():
    """`curate CMD --help` for every command: exit 0, its usage, no traceback (rich markup in a help text,
    such as `[/<clip id>]`, once made `curate export --help` crash), and the README names the command."""
    from curate.cli import app

    names = [command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands]
    assert {"local", "run", "status", "submit", "export"} <= set(names)
    for name in names:
        proc = curate(name, "--help", check=False, env={"COLUMNS": "100"})
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (name, proc.stderr[-800:])
        assert f"Usage: python -m curate {name}" in proc.stdout, name
        assert f"curate {name}" in README, f"README never shows `curate {name}`"
