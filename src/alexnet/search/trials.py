"""The search loop on Optuna's ask-and-tell API: ask the study for a batch of trials, run them as one batch of
Hydra jobs (the launcher decides where: this process, local processes, SLURM), and tell the study each result.

A job's result is what ``alexnet-train`` returned (``optimized_metric``), or the error it ended with: Optuna's
``TrialPruned`` (the pruning callback stopped it) is told as PRUNED, anything else as FAIL.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import optuna
from hydra.core.utils import JobStatus
from optuna.trial import TrialState

from alexnet.errors import UserError
from alexnet.search.space import SearchSpace

log = logging.getLogger(__name__)


class JobResult(Protocol):
    """What a Hydra launcher returns per job (``hydra.core.utils.JobReturn``): its status, and ``return_value``,
    whose reading raises the job's error if it failed (and prints "Error executing job...")."""

    status: JobStatus
    _return_value: Any

    @property
    def return_value(self) -> Any: ...


@dataclass
class Outcome:
    complete: int = 0
    pruned: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.complete + self.pruned + self.failed


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    launch: Callable[[list[list[str]]], Sequence[JobResult]],
    n_trials: int,
    n_jobs: int = 1,
    trial_override: str | None = None,
    max_failure_rate: float = 0.25,
) -> Outcome:
    """Run ``n_trials`` more trials of ``study``, ``n_jobs`` at a time. Each job gets the space's fixed overrides,
    its sampled values, and ``<trial_override>=<trial number>`` so that it can report to its own trial. Stops,
    re-raising a failed job's error, once more than ``max_failure_rate`` of this call's trials have failed."""
    outcome = Outcome()
    while outcome.done < n_trials:
        trials = [study.ask(space.distributions) for _ in range(min(n_jobs, n_trials - outcome.done))]
        batch = [
            [*space.overrides(trial.params), *([f"{trial_override}={trial.number}"] if trial_override else [])]
            for trial in trials
        ]
        failures = []
        for trial, result in zip(trials, launch(batch), strict=True):
            # A failed job's error, read without return_value, which would print it as an error first.
            error = result._return_value if result.status == JobStatus.FAILED else None
            if isinstance(error, optuna.TrialPruned):
                study.tell(trial, state=TrialState.PRUNED)
                outcome.pruned += 1
                log.info("Trial %d pruned (%s) %s", trial.number, error, trial.params)
                continue
            if error is not None:  # the job's own error, re-raised below if too many fail
                study.tell(trial, state=TrialState.FAIL)
                failures.append(result)
                log.warning("Trial %d failed: %s: %s", trial.number, type(error).__name__, error)
                continue
            value = result.return_value
            if isinstance(value, int | float) and math.isfinite(value):
                study.tell(trial, float(value))
                outcome.complete += 1
                log.info("Trial %d: %s %s", trial.number, value, trial.params)
            else:
                study.tell(trial, state=TrialState.FAIL)
                failures.append(None)
                log.warning(
                    "Trial %d returned %r, not a finite number: is optimized_metric a metric the run logs?",
                    trial.number,
                    value,
                )
        outcome.failed += len(failures)
        if outcome.failed > max_failure_rate * outcome.done:
            log.error("%d of %d trials failed (max_failure_rate=%s): stopping.", outcome.failed, outcome.done,
                      max_failure_rate)  # fmt: skip
            for result in failures:
                if result is not None:
                    _ = result.return_value  # raises the job's own error, with its traceback
            raise UserError(
                f"{outcome.failed} of {outcome.done} trials returned no value: set optimized_metric to a metric the "
                "run logs (e.g. val/acc_top1)."
            )
    return outcome
