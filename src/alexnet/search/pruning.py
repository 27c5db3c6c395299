"""Pruning a trial from inside its own job: the job reopens its trial in the study's storage, reports its
validation score after every epoch, and stops when the study's pruner says so.

optuna-integration's ``PyTorchLightningPruningCallback`` does the reporting (and its DDP handshake); it needs
the ``optuna.trial.Trial`` that Optuna hands an objective it calls itself. Here the sweeper asked for the trial in
another process, maybe on another machine, so this callback reopens it from the storage by its number (which the
sweeper passes to the job as ``callbacks.optuna_pruning.trial``) when fitting starts, and wraps the integration's
callback around it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from alexnet.errors import UserError
from alexnet.search.study import open_storage, pruner_of

log = logging.getLogger(__name__)


class TrialPruned(optuna.TrialPruned):
    """The pruner stopped this trial: the sweeper tells it as PRUNED. ``run_outcome`` marks a run that ended as
    asked rather than failed (``alexnet.run.wandb_run.finishing_wandb`` finishes its W&B run with that tag)."""

    run_outcome = "pruned"


class OptunaPruning(Callback):
    """Report ``monitor`` to trial number ``trial`` of the study after every validation; end the fit with
    ``TrialPruned`` when the pruner says so. With ``trial=None`` (not run by the sweeper) it does nothing; a trial
    that is no longer running (a trial's run folder resumed later) is left as it is, with a warning."""

    def __init__(self, study_name: str, storage: Any, pruner: Any = None, monitor: str = "val/acc_top1",
                 trial: int | None = None) -> None:  # fmt: skip
        self.study_name = study_name
        self.storage = storage
        self.pruner = pruner
        self.monitor = monitor
        self.trial = trial
        self._reporter: PyTorchLightningPruningCallback | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Here rather than in __init__: after a spawning strategy has started this process, so the storage's
        # connection is this process's own.
        if stage != "fit" or self.trial is None or self._reporter is not None:
            return
        try:
            study = optuna.load_study(
                study_name=self.study_name, storage=open_storage(self.storage), pruner=pruner_of(self.pruner)
            )
        except KeyError as error:  # Optuna's error for a study name the storage does not hold
            raise UserError(f"No study {self.study_name!r} in {self.storage}: run the search again.") from error
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == self.trial), None)
        if trial is None:
            raise UserError(f"The study {self.study_name!r} has no trial {self.trial}.")
        if trial.state != TrialState.RUNNING:
            log.warning("Trial %d of %r is %s already: not reporting to it.", self.trial, self.study_name,
                        trial.state.name)  # fmt: skip
            return
        # Trial(study, trial_id) reopens a running trial; FrozenTrial keeps the id in _trial_id (no public name).
        self._reporter = PyTorchLightningPruningCallback(optuna.trial.Trial(study, trial._trial_id), self.monitor)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._reporter is not None:
            try:
                self._reporter.on_fit_start(trainer, pl_module)
            except ValueError as error:  # the integration reports DDP trials through an RDB storage only
                raise UserError(
                    f"A DDP trial reports through an RDB storage only ({error}): set hydra.sweeper.storage to an "
                    "sqlite:///, postgresql:// or mysql:// URL."
                ) from error

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._reporter is not None:
            with pruned_as_ours():
                self._reporter.on_validation_end(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Under DDP the integration only sets trainer.should_stop on every rank; check_pruned raises afterwards.
        if self._reporter is not None:
            with pruned_as_ours():
                self._reporter.check_pruned()


@contextmanager
def pruned_as_ours() -> Iterator[None]:
    """Re-raise Optuna's ``TrialPruned`` as this module's, which says the run ended as asked."""
    try:
        yield
    except TrialPruned:
        raise
    except optuna.TrialPruned as error:
        log.info("Trial pruned: %s", error)
        raise TrialPruned(str(error)) from None
