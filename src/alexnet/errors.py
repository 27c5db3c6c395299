"""User-facing errors: one clear message and exit code 2 instead of a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from alexnet.model import ArchitectureError

log = logging.getLogger(__name__)
T = TypeVar("T")


class UserError(Exception):
    """Something the user can fix (a setting, a path, a file); the message says how."""


class LaunchError(UserError):
    """A combination that must not start at all; it stops a whole multirun, not just one job."""


USER_ERRORS = (UserError, ArchitectureError)


def find_user_error(error: BaseException | None) -> BaseException | None:
    """The user error behind ``error``: Hydra's instantiate wraps what a constructor raises."""
    while error is not None:
        if isinstance(error, USER_ERRORS):
            return error
        error = error.__cause__
    return None


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def exit_on_user_error(task: Callable[..., T]) -> Callable[..., T]:
    """Print a user error as one line on stderr and exit with status 2; re-raise anything else (a bug)."""

    @functools.wraps(task)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return task(*args, **kwargs)
        except Exception as error:
            cause = find_user_error(error)
            if cause is None:
                raise
            print(f"error: {cause}", file=sys.stderr, flush=True)
            if in_multirun() and not isinstance(cause, LaunchError):
                # Let Hydra record this job as failed and go on with the others; exiting would end the sweep.
                raise UserError(str(cause)) from None
            raise SystemExit(2) from None

    return wrapper
