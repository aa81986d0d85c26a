"""Faults of the run directory itself: file modes, a full disk while claiming, a damaged run.yaml."""

import errno
import os

import pytest
from conftest import SAMPLES, curate

from curate import markers
from curate.errors import CurateError
from curate.rundir import RunDir


@pytest.fixture
def one_video(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "flash_3.mp4").write_bytes((SAMPLES / "flash_3.mp4").read_bytes())
    return d


@pytest.fixture
def umask(request):
    old = os.umask(request.param)  # inherited by the curate subprocesses
    yield request.param
    os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True)
def test_written_files_follow_umask(umask, one_video, workdir):
    curate("local", "-w", workdir, "-i", one_video, "--parts", "1", "--no-progress")
    claim, _ = markers.try_claim(RunDir.at(workdir).marker("fetch", 0, "claim"))
    want = 0o666 & ~umask
    modes = {str(p.relative_to(workdir)): p.stat().st_mode & 0o777 for p in workdir.rglob("*") if p.is_file()}
    claim.release()
    for name in ("run.yaml", "manifests/part-00000.parquet", "markers/split/00000.done",
                 "stages/split/part-00000.parquet", "metadata/clips.parquet", "markers/fetch/00000.claim"):
        assert modes.pop(name) == want, name
    assert {oct(m) for m in modes.values()} == {oct(want)}  # logs, handoff parts, _manifest.json too


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, fh):
        self._fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_claiming_leaves_no_claim(monkeypatch, tmp_path):
    path = tmp_path / "markers" / "fetch" / "00000.claim"
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **kw: _FullDisk(real_fdopen(fd, *a, **kw)))
    with pytest.raises(CurateError, match=r"cannot write the claim .*00000\.claim: No space left on device"):
        markers.try_claim(path)
    assert list(path.parent.iterdir()) == []  # neither the claim nor its temp file
    monkeypatch.undo()
    claim, holder = markers.try_claim(path)  # the next task is not blocked
    assert claim is not None and holder is None
    claim.release()


@pytest.mark.parametrize("text", ["config: [unclosed\n", "", "- just\n- a list\n", "config: {}\nfingerprints: {}\n",
                                  "fingerprints: {}\nconfig:\n  local:\n    workers: 2\n    workers: 3\n"])
def test_damaged_run_yaml_is_a_clear_error(text, one_video, workdir):
    curate("manifest", "-w", workdir, "-i", one_video, "--parts", "1")
    (workdir / "run.yaml").write_text(text)
    for args in (("status",), ("run", "--stage", "fetch", "--index", "0")):
        proc = curate(*args, "-w", workdir, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "run.yaml" in proc.stderr and "plan is damaged" in proc.stderr and "curate manifest" in proc.stderr
    curate("manifest", "-w", workdir, "-i", one_video, "--parts", "1")  # what the message says repairs it
    curate("status", "-w", workdir)
