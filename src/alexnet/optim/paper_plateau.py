"""The paper's learning-rate schedule: divide by 10 when validation error stops improving, three times in all.

"The heuristic which we followed was to divide the learning rate by 10 when the validation error rate stopped
improving with the current learning rate. The learning rate was initialized at 0.01 and reduced three times
prior to termination." (Krizhevsky et al., 2012, section 5). torch's ReduceLROnPlateau has a floor only as an
absolute ``min_lr``; this counts the drops instead, so the floor follows whatever ``optimizer.lr`` is.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from alexnet.config.rules import check_values


class PaperPlateau(ReduceLROnPlateau):
    """ReduceLROnPlateau that stops after ``max_drops`` reductions (the paper: 3).

    The drop count is an attribute, so it is in ``state_dict()`` and a resumed run keeps counting from where
    it stopped. After the last drop the rate stays where it is, however long validation stalls.

    Args:
        optimizer: the optimizer whose ``param_groups[i]["lr"]`` is divided.
        max_drops: how many times the rate may be divided by ``1 / factor``.
        **kwargs: ReduceLROnPlateau's own settings (``mode``, ``factor``, ``patience``, ``threshold``...).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_drops: int = 3, **kwargs: Any) -> None:
        given = {f"scheduler.{key}": kwargs[key] for key in ("mode", "factor", "patience") if key in kwargs}
        check_values({"scheduler.max_drops": max_drops, **given})
        super().__init__(optimizer, **kwargs)
        self.max_drops, self.drops = max_drops, 0
        self._hold_if_done()

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        before = [float(group["lr"]) for group in self.optimizer.param_groups]
        super().step(metrics, epoch)
        if any(float(group["lr"]) < lr for group, lr in zip(self.optimizer.param_groups, before, strict=True)):
            self.drops += 1
        self._hold_if_done()

    def _hold_if_done(self) -> None:
        # ReduceLROnPlateau never goes below min_lrs: pinning them to today's rates is the floor.
        if self.drops >= self.max_drops:
            self.min_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
