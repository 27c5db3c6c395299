"""Pictures for a W&B dashboard. After each validation: conv1's kernels (the towers side by side), the validation
confusion matrix, and validation images as the net saw them, captioned with predicted and true labels. At the
end of fitting: the paper's figures (``alexnet.paper_figures``), also written into ``<run>/figures/``.

Every picture is handed to W&B as uint8 RGB on 0-255 (or a matplotlib figure), so W&B shows it as it is:
float pictures in [0, 1] would reach W&B's PNG writer as 0 and 1 out of 255, i.e. black. Does nothing without
a WandbLogger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import matplotlib
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from alexnet.analysis.paper_figures import draw_paper_figures, filter_grid
from alexnet.data import ImageClassificationData

matplotlib.use("Agg")  # render to files; no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402


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


class WandbMedia(Callback):
    """Logs the pictures (rank 0 only: the other ranks have no real W&B run).

    Args:
        examples: validation images shown after each validation with their predicted and true labels.
        paper_figures: at the end of fitting, draw the paper's figures from the final weights into
            ``<run_dir>/figures/`` and log them.
        run_dir: the run folder (its metrics give the training curves; its ``figures/`` holds the PNGs).
        figure_train_images: training images searched for Figure 4's nearest neighbours, spread evenly over
            the training set (``None``: all); bounds the time the end of a run takes.
    """

    def __init__(
        self,
        examples: int = 8,
        paper_figures: bool = True,
        run_dir: str | None = None,
        figure_train_images: int | None = 10000,
    ) -> None:
        self.examples = examples
        self.paper_figures = paper_figures
        self.run_dir = Path(run_dir) if run_dir else None
        self.figure_train_images = figure_train_images
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
        # The model input un-normalised by the data module that normalised it: the image the net saw.
        self._batch = (trainer.datamodule.picture(images).cpu(), labels.cpu(), predictions.cpu())

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
                pictures, labels, predictions = self._batch
                captions = [f"pred {names[p]} / true {names[t]}" for p, t in zip(predictions, labels, strict=True)]
                logger.log_image("media/val_examples", list(pictures), step=trainer.global_step, caption=captions)
        plt.close(figure)
        self._batch = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = self._loggers(trainer)
        if not loggers or not self.paper_figures or self.run_dir is None or trainer.global_rank:
            return
        if trainer.datamodule is None:  # fit() given bare loaders: no data module to take the images from
            return
        for logger in trainer.loggers:
            logger.save()  # the training curves are read from the metrics files
        datamodule = trainer.datamodule
        written = draw_paper_figures(
            pl_module.net,
            datamodule,
            out_dir=self.run_dir / "figures",
            run_dir=self.run_dir,
            examples=self.examples,
            train_images=self.figure_train_images,
            num_workers=getattr(datamodule, "num_workers", 0),
        )
        for name, path in written.items():
            for logger in loggers:
                logger.log_image(f"figures/{name}", [str(path)], step=trainer.global_step)


def _class_names(trainer: L.Trainer, count: int) -> list[str]:
    data = trainer.datamodule
    found = data.class_names() if isinstance(data, ImageClassificationData) else []
    return found if len(found) == count else [str(i) for i in range(count)]
