"""``checkpoints/last.ckpt``, the run's one resume point, written only at moments a resume continues from exactly.

Lightning's ``ModelCheckpoint`` writes a step checkpoint on an epoch's last batch too, before the epoch's validation
(Lightning then restores the epoch as finished and skips its validation, its epoch-end metrics and its best
checkpoint), and, depending on the callbacks' order, an epoch-end ``last.ckpt`` before the best checkpoint's score
is recorded. And it writes each checkpoint before the metrics of its step or epoch reach the loggers, so a kill in
between loses those rows for good. This callback makes the checkpoint's contents at the same moments Lightning's
restore expects (the end of a training batch that is not its epoch's last, every ``every_n_train_steps`` steps;
the end of every epoch, after the best checkpoint; the end of training), writes them aside at once, and moves them
into place as ``last.ckpt`` at the next hook, once Lightning has logged that step's or epoch's rows. A kill before
the move leaves the previous ``last.ckpt``, whose resume drops and logs again every row after it.

Lightning moves checkpoint callbacks to the end of the list and keeps their order; ``build`` puts this one last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint

LAST = "last.ckpt"
PENDING = ".last.ckpt.pending"


class ResumePoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` at the moments the module docstring lists.

    Args:
        dirpath: the run's ``checkpoints/`` folder.
        every_n_train_steps: also every N optimizer steps inside an epoch (null: at epoch ends only).
    """

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps or 0
        self._saved_step: int | None = None
        self._pending = False

    @property
    def last_model_path(self) -> str:
        """The resume point's path once it exists ("" before), as Lightning's checkpoint callbacks say it."""
        path = self.dirpath / LAST
        return str(path) if path.is_file() else ""

    def _skips(self, trainer: L.Trainer) -> bool:
        return bool(trainer.sanity_checking or trainer.fast_dev_run or self._saved_step == trainer.global_step)

    def _write_aside(self, trainer: L.Trainer) -> None:
        if self._skips(trainer):
            return
        self._commit(trainer)
        trainer.save_checkpoint(self.dirpath / PENDING)
        self._saved_step, self._pending = trainer.global_step, True

    def _commit(self, trainer: L.Trainer) -> None:
        if self._pending and trainer.is_global_zero:  # the one process that writes checkpoints
            os.replace(self.dirpath / PENDING, self.dirpath / LAST)
        self._pending = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run starts from this step's checkpoint

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        n = self.every_n_train_steps
        if n and trainer.global_step % n == 0 and idx + 1 < trainer.num_training_batches:
            self._write_aside(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_aside(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self._commit(trainer)  # the previous step's row is logged

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._commit(trainer)  # the previous epoch's rows are logged

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._commit(trainer)
        if not self._skips(trainer):  # stopped by max_steps inside an epoch
            trainer.save_checkpoint(self.dirpath / LAST)
            self._saved_step = trainer.global_step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # A stop signal ends at a boundary after every row is logged (and StopOnSignal saves a newer one); after
        # anything else, the checkpoint aside may be ahead of the rows, so the previous last.ckpt stays.
        if type(exception).__name__ == "SIGTERMException":
            self._commit(trainer)
        else:
            self._pending = False
