"""The typer app, the options several commands share, and the entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import CurateError, ExitCode

app = typer.Typer(
    help="Turn raw video collections into training-ready clip datasets, on Slurm or one machine.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

SkipUploadOpt = typer.Option(False, "--skip-upload", help="Leave the upload stage out of this run.")
CalibrationOpt = typer.Option(False, "--calibration",
                              help="Run fetch to score on just enough indices for --sample-size scored clips, then "
                                   "write the calibration report (curate calibrate).")
SampleSizeOpt = typer.Option(500, "--sample-size", help="Scored clips wanted for --calibration.")
ThresholdsOpt = typer.Option(None, "--thresholds",
                             help="YAML of threshold keys (config shape, e.g. filter: {motion: {min_area: 0.002}}) "
                                  "to use instead of the run's; reruns nothing.")
WorkdirOpt = typer.Option(None, "--workdir", "-w", envvar="CURATE_WORKDIR", show_default=False,
                          help="Run directory on the shared filesystem (all state lives here); default: "
                               "$CURATE_WORKDIR, else `workdir:` in --config.")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (see config.example.yaml).")
WorkdirConfigOpt = typer.Option(None, "--config", "-c",
                                help="A config whose `workdir:` is the run directory (when --workdir and "
                                     "CURATE_WORKDIR are not given).")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object for scripts instead of tables.")


def resolve_workdir(workdir: Path | None, config: Path | None) -> Path:
    """--workdir, else CURATE_WORKDIR (typer fills it in), else `workdir:` of --config."""
    if workdir is not None:
        return workdir
    if config is not None:
        from ..config import load_config

        cfg = load_config(config)
        if cfg.workdir:
            return Path(cfg.workdir)
        raise CurateError(f"no run directory: {config} has no `workdir:`; pass --workdir DIR or set CURATE_WORKDIR")
    raise CurateError("no run directory: pass --workdir DIR, set CURATE_WORKDIR, or give --config with a `workdir:`")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def main() -> None:
    from ..faults import TaskInterrupted, storage_errors

    try:
        with storage_errors():  # a full or read-only run directory, wherever it shows: a message, not a traceback
            app()
    except CurateError as exc:
        from ..secrets import scrub

        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except TaskInterrupted as exc:  # SIGTERM to a command that runs tasks (they were stopped first)
        print(f"stopped by {exc}", file=sys.stderr)
        sys.exit(ExitCode.signalled(exc.signum))
