"""The LightningModule: AlexNet trained with cross-entropy, evaluated by top-1/top-5 accuracy."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


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
    probs = net(images.flatten(0, 1)).softmax(-1).view(n, crops, -1).mean(1)
    return probs.clamp_min(1e-12).log()


class LitAlexNet(L.LightningModule):
    """Wraps a network with its loss, metrics, optimizer and learning-rate schedule.

    Args:
        net: the network (``alexnet.model.AlexNet``).
        optimizer: builds the optimizer from the parameters (a Hydra ``_partial_``).
        scheduler: builds the LR scheduler from the optimizer, or ``None`` for a constant rate.
        scheduler_monitor: metric a ReduceLROnPlateau schedule watches (the paper: validation top-1).
        scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        label_smoothing: cross-entropy label smoothing.
        run_config: the run's resolved config, saved in every checkpoint so it can be rebuilt exactly.
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        num_classes = net.num_classes
        self.train_metrics = accuracy_metrics(num_classes, "train/")
        self.val_metrics = accuracy_metrics(num_classes, "val/")
        self.test_metrics = accuracy_metrics(num_classes, "test/")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metrics: MetricCollection) -> torch.Tensor:
        images, labels = batch
        logits = crop_averaged_log_probs(self.net, images) if images.dim() == 5 else self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        metrics.update(logits, labels)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=not on_step)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_metrics)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test", self.test_metrics)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {
            "scheduler": self.scheduler_factory(optimizer),
            "monitor": self.hparams.scheduler_monitor,
            "interval": self.hparams.scheduler_interval,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
