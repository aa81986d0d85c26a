"""Talking to Slurm's commands: the one subprocess wrapper and the one reading of job states."""

from __future__ import annotations

import os
import subprocess

from .errors import CurateError

# Job states after which a job no longer runs anything (squeue's and sacct's names).
FAILURE_STATES = frozenset({"FAILED", "OUT_OF_MEMORY", "TIMEOUT", "CANCELLED", "NODE_FAIL", "PREEMPTED",
                            "BOOT_FAIL", "DEADLINE"})
ENDED_STATES = FAILURE_STATES | {"COMPLETED"}
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"})
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"})


def clean_env() -> dict[str, str]:
    """Our environment minus what a surrounding salloc/srun/sbatch would leak into new jobs."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))
            or k == "SLURM_CONF"}


def slurm(args: list[str], timeout: float = 60, required: bool = True) -> subprocess.CompletedProcess | None:
    """Run a Slurm command. A missing command or a time-out raises when `required`, else gives None."""
    try:
        return subprocess.run(args, capture_output=True, text=True, env=clean_env(), timeout=timeout)
    except FileNotFoundError:
        if not required:
            return None
        raise CurateError(f"`{args[0]}` not found: run this on a Slurm login node (or try the local cluster: "
                          "scripts/slurm-local-cluster.sh up), or use `curate local` on one machine") from None
    except subprocess.TimeoutExpired:
        if not required:
            return None
        raise CurateError(f"`{' '.join(args[:2])}` did not answer within {timeout:.0f} s; is slurmctld up?") from None


def alive(state: str) -> bool:
    """A job in this state may still run (or run again): pending, running, requeued, suspended."""
    return state.split()[0] not in ENDED_STATES if state else False


def job_alive(job_id: str) -> bool | None:
    """Is this job (or array task "J_T") still alive? None = the scheduler cannot tell now."""
    proc = slurm(["squeue", "-h", "-j", job_id, "-o", "%T"], timeout=20, required=False)
    if proc is None:
        return None
    if proc.returncode != 0:
        return False if "Invalid job id" in proc.stderr else None
    return any(alive(s) for s in proc.stdout.split())
