"""User-facing errors: one clear message and exit code 2 instead of a traceback."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.fabric.utilities.exceptions import MisconfigurationException


class UserError(Exception):
    """Something the user can fix (a setting, a path, a file); the message says how."""


class LaunchError(UserError):
    """A combination that must not start at all; it stops a whole multirun, not just one job."""


# Lightning raises MisconfigurationException for Trainer settings it cannot honour (no GPU for
# trainer.accelerator=gpu, more devices than the machine has).
USER_ERRORS = (UserError, MisconfigurationException)


def is_user_error(error: BaseException) -> bool:
    """A UserError, Lightning's MisconfigurationException, or an error whose class says ``user_error = True``:
    ``alexnet.models.alexnet.ArchitectureError``, whose module imports only torch, so cannot subclass UserError."""
    return isinstance(error, USER_ERRORS) or getattr(type(error), "user_error", False) is True


def worker_message(text: str) -> str:
    """The message of an error a DataLoader worker raised: torch re-raises it in the main process with the
    worker's traceback in front (``Caught UserError in DataLoader worker process 0. Original Traceback...``),
    which ends with ``alexnet.errors.UserError: <message>``."""
    if not (text.startswith("Caught ") and "Original Traceback" in text):
        return text
    raised = list(re.finditer(r"^[A-Za-z_][\w.]*(?:Error|Exception): ", text, re.M))  # traceback lines are indented
    return text[raised[-1].end() :].rstrip() if raised else text


def find_user_error(error: BaseException | None) -> BaseException | None:
    """The user error behind ``error``: Hydra's instantiate wraps what a constructor raises."""
    while error is not None:
        if is_user_error(error):
            return error
        error = error.__cause__
    return None


@contextmanager
def reported_user_errors(multirun: bool = False) -> Iterator[None]:
    """Print a user error as one line on stderr and exit with status 2; let anything else (a bug) through.

    In a multirun the job is marked failed instead (re-raised as a bare UserError for Hydra to record), so the
    sweep goes on with the other jobs; exiting would end it. A LaunchError ends the sweep: every job would fail.
    """
    try:
        yield
    except Exception as error:
        cause = find_user_error(error)
        if cause is None:
            raise
        message = worker_message(str(cause))
        print(f"error: {message}", file=sys.stderr, flush=True)
        if multirun and not isinstance(cause, LaunchError):
            raise UserError(message) from None
        raise SystemExit(2) from None
