"""The agc error hierarchy.

Library code raises these; only ``agc_cli.cli`` turns them into a one-line message and the
exit code each class carries (see DESIGN.md, "Errors and exit codes").
"""

from __future__ import annotations


class AgcError(Exception):
    """Base class: a one-line message and the process exit code it maps to."""

    exit_code = 1


class UsageError(AgcError):
    """Bad command-line usage or settings."""

    exit_code = 2


class SettingsError(UsageError):
    """One or more settings are invalid; ``problems`` holds ``(key, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))

    def lines(self) -> list[str]:
        return [f"{key}: {msg}" for key, msg in self.problems]


class DataError(AgcError):
    """Input data is missing, malformed or inconsistent."""

    exit_code = 3


class CheckpointError(AgcError):
    """A checkpoint or run directory cannot be used."""

    exit_code = 4


class DivergedError(AgcError):
    """Training produced a non-finite loss."""

    exit_code = 5


class InterruptedRun(AgcError):
    """Training was interrupted by a signal; a checkpoint was written.

    ``stopped`` says where it stopped, without the way to continue (a caller that continues
    differently, as ``agc bench`` does, words its own hint around it).
    """

    exit_code = 130

    def __init__(self, message: str, stopped: str | None = None):
        super().__init__(message)
        self.stopped = stopped or message
