"""Slurm executor: one array job per stage, index i of stage k after index i of stage k-1.

Only *where* tasks run is decided here: every array task runs `curate run` with plain
arguments against the submission's own immutable plan. We write sbatch scripts ourselves
(rather than through submitit) because an array here must carry gapped specs ("3,17,40-45"),
an index offset when the array is split at MaxArraySize, and `aftercorr` dependencies between
arrays; submitit's arrays are 0..N-1 batches of pickled callables.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..arrayspec import compact
from ..config import Config, SlurmResources
from ..errors import CurateError, ExitCode
from ..plan import Plan
from ..rundir import RunDir, atomic_write_json, atomic_write_text, read_json
from ..secrets import scrub
from ..slurm_cli import slurm
from ..task import RequeueLimitReached
from .base import preflight, unfinished

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's own default


def profile_dir() -> Path:
    """The shipped profiles: the repo's slurm/ folder, installed as the package curate.profiles."""
    from importlib.resources import files

    return Path(str(files("curate.profiles")))


@dataclass
class Chunk:
    """One sbatch array: task ids are index - offset, all below MaxArraySize."""

    offset: int
    task_ids: list[int]
    job_id: str | None = None
    script: str | None = None
    run_wide: bool = False  # one plain job for every index (curate/runwide.py), not an array

    @property
    def indices(self) -> list[int]:
        return [self.offset + t for t in self.task_ids]

    @property
    def array(self) -> str:
        return compact(self.task_ids)


def split_into_chunks(indices: list[int], max_array_size: int) -> list[Chunk]:
    """Group indices by offset so every task id is < MaxArraySize; same split for every stage."""
    chunks: dict[int, list[int]] = {}
    for index in sorted(set(indices)):
        offset = (index // max_array_size) * max_array_size
        chunks.setdefault(offset, []).append(index - offset)
    return [Chunk(offset, ids) for offset, ids in sorted(chunks.items())]


# -- resources -----------------------------------------------------------------------------------
def load_profile(name: str) -> dict:
    import yaml

    shipped = profile_dir()
    path = Path(name) if ("/" in name or name.endswith(".yaml")) else shipped / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in shipped.glob("*.yaml")))
        raise CurateError(f"slurm.profile {name!r}: no file {path} (shipped profiles: {known}; or give a path)")
    doc = yaml.safe_load(path.read_text()) or {}
    unknown = set(doc) - {"defaults", "stages"}
    if unknown:
        raise CurateError(f"slurm profile {path}: unknown keys {', '.join(sorted(unknown))}; use defaults: and stages:")
    try:
        return {"defaults": SlurmResources.model_validate(doc.get("defaults") or {}),
                "stages": {k: SlurmResources.model_validate(v or {}) for k, v in (doc.get("stages") or {}).items()}}
    except Exception as exc:
        raise CurateError(f"slurm profile {path}: {exc}") from None


def declared_resources(config: Config, stage: str) -> SlurmResources:
    """What the stage itself says one task needs, from the devices and models its config uses."""
    from stages import STAGES

    if stage not in STAGES:  # the merge job: the defaults
        return SlurmResources()
    need = STAGES[stage].load().resources(config.stage_section(stage))
    return SlurmResources(cpus=need.cpus, mem=need.mem, gres=f"gpu:{need.gpus}" if need.gpus else None)


def resources_for(config: Config, stage: str) -> SlurmResources:
    """the stage's own declaration < profile defaults < profile stage < config defaults < config stage."""
    profile = load_profile(config.slurm.profile)
    merged: dict = {}
    for layer in (declared_resources(config, stage), profile["defaults"], profile["stages"].get(stage),
                  config.slurm.defaults, config.slurm.stages.get(stage)):
        if layer is not None:
            merged.update({k: v for k, v in layer.model_dump().items() if v is not None})
    return SlurmResources(**merged)


# -- the script ----------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z0-9_.,:/%@+=-]*$")


def sbatch_option(flag: str, value: object) -> str:
    """`--flag=value` for an #SBATCH line; sbatch reads double quotes and backslash escapes there."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise CurateError(f"sbatch --{flag}: the value {text!r} has a line break")
    if not _PLAIN.match(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"--{flag}={text}"


def sbatch_lines(res: SlurmResources) -> list[str]:
    lines = []
    for flag, value in (("partition", res.partition), ("cpus-per-task", res.cpus), ("mem", res.mem),
                        ("gres", res.gres), ("time", res.time), ("account", res.account), ("qos", res.qos),
                        ("constraint", res.constraint)):
        if value is not None:
            lines.append(sbatch_option(flag, value))
    if res.signal_s:
        lines.append(f"--signal=B:USR1@{res.signal_s}")
    return lines + list(res.extra or [])  # raw arguments, as the user wrote them


def render_script(run: RunDir, stage: str, chunk: Chunk, res: SlurmResources, plan_path: Path,
                  python: str, setup: list[str], dependency: str | None, submission: str,
                  dependency_kind: str = "aftercorr") -> str:
    """The complete sbatch script of one array: printable, testable, and what gets submitted.
    After a run-wide step every task waits for its one job (`afterok`) instead of its own index."""
    logs = run.log_dir(stage)
    array = chunk.array + (f"%{res.throttle}" if res.throttle else "")
    head = [
        "#!/bin/bash",
        f"#SBATCH --job-name=curate-{stage}",
        f"#SBATCH --array={array}",
        f"#SBATCH {sbatch_option('output', f'{logs}/%A_%a.out')}",
        f"#SBATCH {sbatch_option('error', f'{logs}/%A_%a.err')}",
        "#SBATCH --open-mode=append",  # a requeued attempt appends to, never overwrites, the last one's log
        "#SBATCH --requeue",
        "#SBATCH --kill-on-invalid-dep=yes",
        *[f"#SBATCH {line}" for line in sbatch_lines(res)],
    ]
    if dependency:
        head.append(f"#SBATCH --dependency={dependency_kind}:{dependency}")
    run_cmd = " ".join(shlex.quote(p) for p in [python, "-m", "curate", "run", "--workdir", str(run.root),
                                                  "--stage", stage, "--plan", str(plan_path)])
    no_requeue, failed, on_term = int(RequeueLimitReached.exit_code), int(ExitCode.STAGE_FAILED), ExitCode.signalled(15)
    task = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"  # this array task's Slurm id, in the shell
    body = f"""
# curate submission {submission}: stage {stage}, index = SLURM_ARRAY_TASK_ID + {chunk.offset}
set -u
CURATE_INDEX=$((SLURM_ARRAY_TASK_ID + {chunk.offset}))
say() {{ echo "=== curate {stage}[$CURATE_INDEX] $*"; echo "=== curate {stage}[$CURATE_INDEX] $*" >&2; }}
say "job {task} attempt $((${{SLURM_RESTART_COUNT:-0}} + 1)) on $(hostname) at $(date -Is)"
{chr(10).join(setup)}
# The task runs in the background so this shell can take USR1 (--signal=B:USR1@N) before the time
# limit or on preemption: the task stops, releases its claim, and the array task is requeued,
# unless it was requeued slurm.max_requeues times already (the task then fails with exit {no_requeue}).
{run_cmd} --index "$CURATE_INDEX" &
child=$!
requeue() {{
  say "time limit or preemption: stopping"
  kill -USR1 "$child" 2>/dev/null
  wait "$child"
  if [ $? -eq {no_requeue} ]; then
    say "not requeued: slurm.max_requeues reached"
    exit {failed}
  fi
  say "requeueing"
  scontrol requeue "{task}"
  exit 0
}}
trap requeue USR1
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit {on_term}' TERM
wait "$child"
exit $?
"""
    return "\n".join(head) + "\n" + body


def render_merge_script(run: RunDir, res: SlurmResources, python: str, setup: list[str], dependency: str | None,
                        submission: str) -> str:
    """The job after the last stage: writes metadata/clips.parquet, incomplete rows included.

    `afterany` runs it when every task of the last stage has ended, failed ones too."""
    logs = run.log_dir("merge")
    head = ["#!/bin/bash", "#SBATCH --job-name=curate-merge",
            f"#SBATCH {sbatch_option('output', f'{logs}/%j.out')}",
            f"#SBATCH {sbatch_option('error', f'{logs}/%j.err')}",
            *[f"#SBATCH {line}" for line in sbatch_lines(res) if not line.startswith("--signal")]]
    if dependency:
        head.append(f"#SBATCH --dependency=afterany:{dependency}")
    export = " ".join(shlex.quote(p) for p in [python, "-m", "curate", "export", "--workdir", str(run.root)])
    return "\n".join(head) + f"""

# curate submission {submission}: the final table, once the last stage has ended for every index
set -u
{chr(10).join(setup)}
echo "=== curate merge: job $SLURM_JOB_ID on $(hostname) at $(date -Is)"
exec {export}
"""


def render_run_wide_script(run: RunDir, stage: str, res: SlurmResources, plan_path: Path, python: str,
                           setup: list[str], dependency: str | None, submission: str) -> str:
    """The one job of a run-wide stage (curate/runwide.py): after every chunk of the stage before has
    ended (`afterany`: failed indices are left out and said so), over every index at once."""
    logs = run.log_dir(stage)
    head = ["#!/bin/bash", f"#SBATCH --job-name=curate-{stage}",
            f"#SBATCH {sbatch_option('output', f'{logs}/%j.out')}",
            f"#SBATCH {sbatch_option('error', f'{logs}/%j.err')}",
            "#SBATCH --open-mode=append", "#SBATCH --requeue",
            *[f"#SBATCH {line}" for line in sbatch_lines(res) if not line.startswith("--signal")]]
    if dependency:
        head.append(f"#SBATCH --dependency=afterany:{dependency}")
    run_cmd = " ".join(shlex.quote(p) for p in [python, "-m", "curate", "run", "--workdir", str(run.root),
                                                  "--stage", stage, "--index", "0", "--plan", str(plan_path)])
    return "\n".join(head) + f"""

# curate submission {submission}: stage {stage}, one run-wide task over every index
set -u
{chr(10).join(setup)}
echo "=== curate {stage} (run-wide): job $SLURM_JOB_ID on $(hostname) at $(date -Is)"
exec {run_cmd}
"""


# -- talking to Slurm ----------------------------------------------------------------------------
def max_array_size(config: Config) -> int:
    if config.slurm.max_array_size:
        return config.slurm.max_array_size
    proc = slurm(["scontrol", "show", "config"])
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not match:
        raise CurateError(f"could not read MaxArraySize from `scontrol show config`: {proc.stderr.strip()}; "
                          "set slurm.max_array_size in the config")
    return int(match.group(1))


def sbatch(script_path: Path) -> str:
    proc = slurm(["sbatch", "--parsable", str(script_path)])
    if proc.returncode != 0:
        raise CurateError(f"sbatch {script_path} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip().split(";")[0]  # "jobid" or "jobid;cluster"


# -- submissions ---------------------------------------------------------------------------------
@dataclass
class Submission:
    id: str
    created: float
    stages: dict[str, list[Chunk]] = field(default_factory=dict)
    indices: str = ""
    already_done: int = 0  # indices left out because every submitted stage is done for them
    merge_job_id: str | None = None  # the final-table job after the last stage

    def to_json(self) -> dict:
        return {"id": self.id, "created": self.created, "indices": self.indices, "already_done": self.already_done,
                "merge_job_id": self.merge_job_id,
                "stages": {s: [{k: v for k, v in asdict(c).items() if k != "script"} for c in chunks]
                           for s, chunks in self.stages.items()}}


def submission_dir(run: RunDir, sid: str) -> Path:
    return run.root / "submissions" / sid


def load_submissions(run: RunDir) -> list[dict]:
    """Every recorded submission, oldest first."""
    docs = [read_json(p) for p in sorted((run.root / "submissions").glob("*/submission.json"))]
    return sorted((d for d in docs if d), key=lambda d: d["created"])


def submit(run: RunDir, plan: Plan, stages: list[str], indices: list[int], throttle: int | None = None,
           dry_run: bool = False, echo=print) -> Submission:
    """Submit (or print) one array job per stage and chunk, chained per index with aftercorr.

    Work that is already done is never sent: indices done in every stage are left out, and so are
    the leading stages that every remaining index has done.
    """
    config = plan.config
    for stage in stages:
        plan.check_stage(stage)
    for index in (indices[0], indices[-1]):
        plan.check_index(index)
    sid = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    stages, todo = unfinished(run, plan, stages, indices)
    sub = Submission(sid, time.time(), indices=compact(todo), already_done=len(indices) - len(todo))
    if not todo:
        return sub
    indices = todo
    folder = submission_dir(run, sid)
    plan_path = folder / "plan.yaml"
    try:
        limit = max_array_size(config)
    except CurateError:
        if not dry_run:
            raise
        limit = DEFAULT_MAX_ARRAY_SIZE
        echo(f"# no Slurm here: assuming MaxArraySize={limit} (set slurm.max_array_size to choose)")
    preflight(run, plan, stages, here=False)  # missing weights stop us here, not after the queue wait
    python = config.slurm.python or sys.executable
    if not dry_run:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(plan_path, plan.path.read_text())  # this submission's own, immutable plan
        for stage in stages:
            run.log_dir(stage).mkdir(parents=True, exist_ok=True)
    from ..runwide import is_run_wide

    previous: list[Chunk] | None = None
    for stage in stages:
        res = resources_for(config, stage)
        if throttle:
            res.throttle = throttle
        before = stages[stages.index(stage) - 1]
        if is_run_wide(stage):
            chunks = [Chunk(0, list(indices), run_wide=True)]
            dep = None if previous is None else ":".join(
                c.job_id or f"<job id of {before} chunk {n}>" for n, c in enumerate(previous))
            chunks[0].script = render_run_wide_script(run, stage, res, plan_path, python, config.slurm.setup, dep, sid)
        else:
            chunks = split_into_chunks(indices, limit)
        for n, chunk in enumerate(chunks):
            if not chunk.run_wide:
                dep, kind = None, "aftercorr"
                if previous is not None and previous[0].run_wide:
                    dep, kind = previous[0].job_id or f"<job id of {before}>", "afterok"
                elif previous is not None:
                    dep = previous[n].job_id or f"<job id of {before} chunk {n}>"
                chunk.script = render_script(run, stage, chunk, res, plan_path, python, config.slurm.setup, dep, sid,
                                             kind)
            if dry_run:
                what = "one run-wide job" if chunk.run_wide else f"as array {chunk.array} (offset {chunk.offset})"
                echo(f"# --- {stage}: indices {compact(chunk.indices)} {what} ---")
                echo(scrub(chunk.script))
                continue
            path = folder / f"{stage}-{n:03d}.sbatch"
            atomic_write_text(path, chunk.script)
            try:
                chunk.job_id = sbatch(path)
            except CurateError as exc:
                atomic_write_json(folder / "submission.json", sub.to_json())
                submitted = [c.job_id for cs in sub.stages.values() for c in cs if c.job_id]
                raise CurateError(f"{exc}\nalready submitted in this submission: {', '.join(submitted) or 'none'} "
                                  f"(recorded in {folder}; `scancel` them if you give up)") from None
            sub.stages.setdefault(stage, []).append(chunk)
            atomic_write_json(folder / "submission.json", sub.to_json())
        if dry_run:
            sub.stages[stage] = chunks
        previous = chunks
    if stages and stages[-1] == plan.stages[-1]:
        _submit_merge(run, plan, sub, previous, python, folder, dry_run, echo)
    return sub


def _submit_merge(run: RunDir, plan: Plan, sub: Submission, last: list[Chunk], python: str, folder: Path,
                  dry_run: bool, echo) -> None:
    dependency = ":".join(c.job_id or f"<job id of {plan.stages[-1]} chunk {n}>" for n, c in enumerate(last))
    script = render_merge_script(run, resources_for(plan.config, "merge"), python, plan.config.slurm.setup,
                                 dependency, sub.id)
    if dry_run:
        echo("# --- merge: the final table after the last stage ---")
        echo(scrub(script))
        return
    run.log_dir("merge").mkdir(parents=True, exist_ok=True)
    path = folder / "merge.sbatch"
    atomic_write_text(path, script)
    sub.merge_job_id = sbatch(path)
    atomic_write_json(folder / "submission.json", sub.to_json())
