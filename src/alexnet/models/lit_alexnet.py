"""The LightningModule: AlexNet trained with cross-entropy, evaluated by top-1/top-5 accuracy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from alexnet.config.rules import check_values
from alexnet.errors import UserError
from alexnet.models.alexnet import log_mean_softmax
from alexnet.models.checkpoint_files import intact_checkpoints
from alexnet.models.feature_freezing import FeatureFreezing, parameter_groups, scale_features_lr

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite."""


def accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    # ImageNet's top-k accuracy is micro-averaged; torchmetrics defaults to macro.
    return MetricCollection(
        {
            "acc_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        },
        prefix=prefix,
    )


def crop_averaged_log_probs(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, crops, C, H, W) -> (N, classes): log of the crops' mean softmax (the paper's 10-crop test).

    Cross-entropy of these log-probabilities is -log p, so loss and accuracy stay comparable to one crop.
    """
    n, crops = images.shape[:2]
    return log_mean_softmax(net(images.flatten(0, 1)).view(n, crops, -1), dim=1)


class LitAlexNet(L.LightningModule):
    """Wraps a network with its loss, metrics, optimizer and learning-rate schedule.

    Args:
        net: the network (``alexnet.models.alexnet.AlexNet``).
        optimizer: builds the optimizer from the parameters (a Hydra ``_partial_``).
        scheduler: builds the LR scheduler from the optimizer, or ``None`` for a constant rate.
        scheduler_monitor: metric a ReduceLROnPlateau schedule watches (the paper: validation top-1).
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        label_smoothing: cross-entropy label smoothing.
        run_config: the run's resolved config, saved in every checkpoint so it can be rebuilt exactly.
        nonfinite_loss: what a NaN/inf training loss does: ``stop`` the run with a message naming the step and
            the last good checkpoint, or ``skip`` the batch (no optimizer step) with a warning.
        freeze_features_epochs: fine-tuning: the convolutional features stay frozen for this many epochs from the
            start (-1: the whole run); see ``feature_freezing.py``.
        features_lr_scale: the features' learning rate as a multiple of the optimizer's (the head's). With the
            defaults (0 and 1) the optimizer holds one parameter group, as before fine-tuning existed.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_monitor: str = "val/acc_top1",
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        run_config: dict | None = None,
        nonfinite_loss: str = "stop",
        freeze_features_epochs: int = 0,
        features_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_values(
            {
                "module.nonfinite_loss": nonfinite_loss,
                "module.label_smoothing": label_smoothing,
                "module.scheduler_interval": scheduler_interval,
                "module.freeze_features_epochs": freeze_features_epochs,
                "module.features_lr_scale": features_lr_scale,
            }
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.class_names: list[str] | None = None  # the data's classes, in label order: saved in every checkpoint
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        num_classes = net.num_classes
        self.train_metrics = accuracy_metrics(num_classes, "train/")
        self.val_metrics = accuracy_metrics(num_classes, "val/")
        self.test_metrics = accuracy_metrics(num_classes, "test/")
        # Each stage's mean loss over its images, weighted by batch size. A torchmetrics object rather than a logged
        # tensor: under DDP it sums (loss x images) and images over the ranks, where Lightning's sync_dist averages
        # the ranks' means (wrong when the last shard is shorter), and its state can travel in a checkpoint, so a
        # mid-epoch resume ends with the epoch's true mean (Lightning does not save its own running means).
        # nan_strategy="ignore": a NaN batch (module.nonfinite_loss=skip) stays out of the mean; "disable" would also
        # drop the weights (torchmetrics 1.9 replaces them by ones).
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric(nan_strategy="ignore") for _ in range(3))
        # Read (and pictured) by the W&B media callback; synced across ranks like the accuracies.
        self.val_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metrics: MetricCollection) -> torch.Tensor:
        images, labels = batch
        logits = crop_averaged_log_probs(self.net, images) if images.dim() == 5 else self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        metrics.update(logits, labels)
        if stage == "val":
            self.val_confusion.update(logits.detach(), labels)
        mean_loss = getattr(self, f"{stage}_loss")
        if stage == "train":  # the batch's loss on the progress bar and as train/loss_step, the epoch's mean after
            mean_loss(loss.detach(), weight=len(labels))
            self.log("train/loss", mean_loss, on_step=True, on_epoch=True, prog_bar=True)
        else:
            mean_loss.update(loss.detach(), weight=len(labels))
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        loss = self._step(batch, "train", self.train_metrics)
        # Every rank decides together, so a skip never leaves one DDP rank waiting for another's gradients.
        if self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True):
            return loss
        where = f"step {self.global_step + 1} (epoch {self.current_epoch}, batch {batch_idx})"
        if self.hparams.nonfinite_loss == "skip":
            log.warning("Non-finite training loss at %s: batch skipped (module.nonfinite_loss=skip).", where)
            return None  # Lightning skips the backward pass and the optimizer step
        value = float(loss.detach())
        raise NonFiniteLossError(
            f"The training loss became {value} at {where}. Last good checkpoint: {self._last_checkpoint()}. "
            "Lower optimizer.lr (or set trainer.gradient_clip_val), then resume=<run folder>; "
            "module.nonfinite_loss=skip skips such batches instead."
        )

    def _last_checkpoint(self) -> str:
        """The newest intact checkpoint of the run (checked against its seal: a damaged one is not named)."""
        callbacks = self.trainer.checkpoint_callbacks if self._trainer is not None else []
        found = {Path(getattr(c, name, "") or "") for c in callbacks for name in ("last_model_path", "best_model_path")}
        intact = intact_checkpoints(p for p in found if p.name and p.is_file())
        newest = max(intact, key=lambda pair: (pair[1], pair[0].stat().st_mtime), default=None)
        return str(newest[0]) if newest else "none intact"

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if self.class_names is None and hasattr(datamodule, "class_names"):
            self.class_names = datamodule.class_names()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What each output means: eval and predict refuse data whose classes differ, and name predictions by it.
        checkpoint["class_names"] = self.class_names

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_metrics)

    def on_validation_epoch_start(self) -> None:
        self.val_confusion.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test", self.test_metrics)

    @property
    def fine_tuning(self) -> bool:
        return self.hparams.freeze_features_epochs != 0 or self.hparams.features_lr_scale != 1

    def configure_callbacks(self) -> list[L.Callback]:
        if self.hparams.freeze_features_epochs == 0:
            return []
        return [FeatureFreezing(self.net.features.parameters(), self.hparams.freeze_features_epochs)]

    def configure_optimizers(self) -> Any:
        if self.fine_tuning:  # the features' group and the head's, from the first step (feature_freezing.py)
            optimizer = self.optimizer_factory(parameter_groups(self.net))
            scale_features_lr(optimizer, self.hparams.features_lr_scale)  # before the scheduler reads the rates
        else:
            optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {
            "scheduler": self.scheduler_factory(optimizer),
            "monitor": self.hparams.scheduler_monitor,
            "interval": self.hparams.scheduler_interval,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
