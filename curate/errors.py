"""Errors that reach the user as a message, never as a traceback, and the one table of exit codes."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code of `curate` (the README's table is written from the meanings below)."""

    OK = 0
    STAGE_FAILED = 1
    USAGE = 2
    UPSTREAM_NOT_DONE = 3
    REQUEUE_LIMIT = 99
    SIGNAL = 128  # plus the signal's number

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]

    @staticmethod
    def signalled(signum: int) -> int:
        return int(ExitCode.SIGNAL) + signum


_MEANINGS = {
    ExitCode.OK: "done, already done, or claimed by another task",
    ExitCode.STAGE_FAILED: "the stage failed (see the `.failed` marker); `local`: an index failed",
    ExitCode.USAGE: ("a usage or config error, missing weights or packages, a full or read-only run directory "
                     "(nothing was done)"),
    ExitCode.UPSTREAM_NOT_DONE: "the previous stage is not done for this index",
    ExitCode.REQUEUE_LIMIT: ("stopped at the time limit after `slurm.max_requeues` requeues "
                             "(a `.failed` marker says so)"),
    ExitCode.SIGNAL: "stopped by signal N (the claim is released, nothing is written)",
}


def exit_code_table() -> str:
    """The README's exit-code table, in Markdown."""
    rows = [f"| {'128+N' if code is ExitCode.SIGNAL else int(code)} | {code.meaning} |" for code in ExitCode]
    return "\n".join(["| code | meaning |", "|---|---|", *rows])


class CurateError(Exception):
    """A fault the user can fix; the message says what to do."""

    exit_code = ExitCode.USAGE


class ConfigError(CurateError):
    """The configuration is invalid; raised before any work starts."""


class DeviceUnavailable(CurateError):
    """A device the config asks for is not on this machine (a login node checking a GPU stage)."""


class UpstreamNotDone(CurateError):
    """A task was started before the stage it reads from finished for its index."""

    exit_code = ExitCode.UPSTREAM_NOT_DONE
