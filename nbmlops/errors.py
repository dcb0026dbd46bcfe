"""The one exception hierarchy of nbmlops.

Every error nbmlops raises on purpose derives from :class:`NbmlopsError`. The faces map them:
the magics turn them into ``UsageError`` (no traceback), the CLI into exit codes, the server
into HTTP statuses. Nothing else catches them by kind.
"""

from __future__ import annotations

__all__ = [
    "NbmlopsError",
    "StoreError",
    "StoreCorruptError",
    "StoreVersionError",
    "StoreUnavailableError",
    "NotFoundError",
    "AmbiguousIdError",
    "InvalidArgumentError",
    "ExecutionFailedError",
    "PipelineError",
    "ParameterError",
]


class NbmlopsError(Exception):
    """Root of every error nbmlops raises on purpose."""

    exit_code = 1


class StoreError(NbmlopsError):
    """The lineage store cannot be used."""

    exit_code = 3


class StoreCorruptError(StoreError):
    """The store file exists but is not a readable nbmlops store."""


class StoreVersionError(StoreError):
    """The store was written by a newer nbmlops than this one."""


class StoreUnavailableError(StoreError):
    """The store cannot be opened or written right now (locked, unwritable, unreachable)."""


class NotFoundError(NbmlopsError):
    """A run, artifact or variable that was asked for does not exist."""

    exit_code = 4


class AmbiguousIdError(NotFoundError):
    """A run id prefix matches more than one run."""


class ExecutionFailedError(NbmlopsError):
    """A headless notebook run failed: a cell raised or the kernel died (the run is recorded)."""

    exit_code = 1


class InvalidArgumentError(NbmlopsError):
    """An argument has the wrong form (bad filter, bad sort key, bad KEY=VALUE)."""

    exit_code = 2


class PipelineError(InvalidArgumentError):
    """A pipeline definition is invalid (syntax, schema, cycle, missing notebook or step).

    The message names the file and, where known, ``line:column``."""


class ParameterError(InvalidArgumentError):
    """A parameter given to a notebook is unknown, or cannot take the declared type."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        #: the parameter's name, when one parameter is at fault
        self.param = param


class ScheduleError(InvalidArgumentError):
    """A schedule or trigger definition nbmlops refuses: bad cron, unknown zone, missing target,
    a name already taken."""


class SchedulerBusyError(NbmlopsError):
    """Another scheduler holds this store's lease."""

    exit_code = 5
