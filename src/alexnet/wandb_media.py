"""Pictures for a W&B dashboard: conv1's filters (the two towers side by side), the validation confusion
matrix, and a few validation images with predicted and true labels. Does nothing without a WandbLogger."""

from __future__ import annotations

from typing import Any

import lightning as L
import matplotlib
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchvision.utils import make_grid

from alexnet.data import ImageClassificationData

matplotlib.use("Agg")  # render to files; no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402


def filter_grid(net: nn.Module) -> torch.Tensor:
    """conv1's filters as one (3, H, W) image in [0, 1]; with the paper's two towers (conv2 grouped), the
    filters feeding each tower form their own block, side by side."""
    conv1, conv2 = [m for m in net.modules() if isinstance(m, nn.Conv2d)][:2]
    weights = conv1.weight.detach().float().cpu()
    flat = weights.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    weights = (weights - low) / (high - low).clamp_min(1e-12)  # each filter stretched to [0, 1]
    towers = weights.chunk(conv2.groups)  # conv1's output channels feed conv2's groups in order
    grids = [make_grid(tower, nrow=8, padding=1, pad_value=1.0) for tower in towers]
    gap = torch.ones(3, grids[0].shape[1], 6)
    pieces = [grids[0]]
    for grid in grids[1:]:
        pieces += [gap, grid]
    return torch.cat(pieces, dim=2)


def confusion_figure(matrix: torch.Tensor, class_names: list[str]) -> plt.Figure:
    n = len(matrix)
    figure, axes = plt.subplots(figsize=(min(2 + 0.5 * n, 24), min(2 + 0.5 * n, 24)))
    axes.imshow(matrix.cpu().numpy(), cmap="Blues")
    if n <= 30:
        axes.set_xticks(range(n), class_names, rotation=90)
        axes.set_yticks(range(n), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    figure.tight_layout()
    return figure


def to_picture(image: torch.Tensor) -> torch.Tensor:
    """A normalised model input back to a viewable [0, 1] image."""
    image = image.detach().float().cpu()
    return (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)


class WandbMedia(Callback):
    """Logs the pictures after each validation epoch (rank 0 only: the other ranks have no real W&B run).

    Args:
        examples: validation images shown with their predicted and true labels.
    """

    def __init__(self, examples: int = 8) -> None:
        self.examples = examples
        self._batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _loggers(trainer: L.Trainer) -> list[WandbLogger]:
        return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        if batch_idx or trainer.sanity_checking or not self._loggers(trainer) or trainer.global_rank:
            return
        images, labels = batch[0][: self.examples], batch[1][: self.examples]
        with torch.no_grad():
            predictions = pl_module(images).argmax(-1)
        self._batch = (images, labels, predictions)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = self._loggers(trainer)
        if trainer.sanity_checking or not loggers:
            return
        matrix = pl_module.val_confusion.compute()  # every rank takes part in the sync
        if trainer.global_rank:
            return
        names = _class_names(trainer, len(matrix))
        figure = confusion_figure(matrix, names)
        for logger in loggers:
            logger.log_image("media/conv1_filters", [filter_grid(pl_module.net)], step=trainer.global_step)
            logger.log_image("media/val_confusion_matrix", [figure], step=trainer.global_step)
            if self._batch is not None:
                images, labels, predictions = self._batch
                captions = [f"pred {names[p]} / true {names[t]}" for p, t in zip(predictions, labels, strict=True)]
                pictures = [to_picture(image) for image in images]
                logger.log_image("media/val_examples", pictures, step=trainer.global_step, caption=captions)
        plt.close(figure)
        self._batch = None


def _class_names(trainer: L.Trainer, count: int) -> list[str]:
    data = trainer.datamodule
    found = data.class_names() if isinstance(data, ImageClassificationData) else []
    return found if len(found) == count else [str(i) for i in range(count)]
