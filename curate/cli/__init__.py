"""`curate` command line. Heavy packages are imported inside the commands that need them."""

from . import pipeline, results, slurm  # noqa: F401  (importing them registers their commands)
from .app import app, main

# `curate --help` lists commands in registration order, which the module split would change: keep the old one.
_HELP_ORDER = ("manifest", "run", "local", "status", "submit", "rerun", "export", "offline-filter", "calibrate",
               "shards", "models")


def _help_rank(command) -> int:
    name = command.name or command.callback.__name__.replace("_", "-")
    return _HELP_ORDER.index(name) if name in _HELP_ORDER else len(_HELP_ORDER)


app.registered_commands.sort(key=_help_rank)

__all__ = ["app", "main"]
