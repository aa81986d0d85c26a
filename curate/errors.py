"""Errors that reach the user as a message, never as a traceback."""


class CurateError(Exception):
    """A fault the user can fix; the message says what to do. Exit code 2."""

    exit_code = 2


class ConfigError(CurateError):
    """The configuration is invalid; raised before any work starts."""


class UpstreamNotDone(CurateError):
    """A task was started before the stage it reads from finished for its index."""

    exit_code = 3
