"""Fine-tuning: the convolutional features frozen for the first epochs, then trained at a fraction of the head's rate.

Not Lightning's ``BackboneFinetuning``: it adds the backbone's parameter group to the optimizer when it unfreezes,
mid-run, so the optimizer of a run resumed after that epoch has another number of groups than the one its
checkpoint saved (Lightning's optimizer-state restore fails or mismatches the momentum buffers), and it sets
``requires_grad=False``, which a DDP model wrapped before the freeze does not expect (its reducer waits for
gradients that never come). Here both groups exist from the first step (``param_groups``: the features at
``features_lr_scale`` x the optimizer's rate, the head at the rate itself) and freezing only drops the features'
gradients before each optimizer step: SGD skips a parameter without a gradient (no update, no momentum, no weight
decay). The decision reads ``trainer.current_epoch`` at every step and keeps no state, so a run resumed in the
middle of an epoch, frozen or not, does exactly what the uninterrupted run did.
"""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

FEATURES, HEAD = "features", "head"


def parameter_groups(net: nn.Module) -> list[dict]:
    """The net's parameters as two named optimizer groups: the convolutional ``features``, and the rest (the
    classifier: the ``head``). Both take the optimizer's own settings."""
    features = list(net.features.parameters())
    chosen = {id(p) for p in features}
    head = [p for p in net.parameters() if id(p) not in chosen]
    return [{"params": features, "name": FEATURES}, {"params": head, "name": HEAD}]


def scale_features_lr(optimizer: torch.optim.Optimizer, features_lr_scale: float) -> None:
    """The features' group at ``features_lr_scale`` x the optimizer's rate (the head keeps the rate itself)."""
    for group in optimizer.param_groups:
        if group.get("name") == FEATURES:
            group["lr"] = group["lr"] * features_lr_scale


def frozen(epoch: int, freeze_features_epochs: int) -> bool:
    """Whether the features are frozen in ``epoch``: its first ``freeze_features_epochs`` epochs (-1: always)."""
    return freeze_features_epochs == -1 or epoch < freeze_features_epochs


class FeatureFreezing(Callback):
    """Drops the gradients of ``parameters`` (the features) before each optimizer step of a frozen epoch.

    Args:
        parameters: the features' parameters.
        freeze_features_epochs: epochs to keep them frozen from the start; -1 for the whole run.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], freeze_features_epochs: int) -> None:
        self.parameters = list(parameters)
        self.freeze_features_epochs = freeze_features_epochs

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if frozen(trainer.current_epoch, self.freeze_features_epochs):
            for parameter in self.parameters:
                parameter.grad = None
