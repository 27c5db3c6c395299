"""``data.batch_size`` is the global batch (the paper's 128), split evenly across the data-parallel ranks."""

from __future__ import annotations

import lightning as L

from alexnet.errors import UserError


def per_device_batch_size(global_batch: int, trainer: L.Trainer | None) -> int:
    ranks = trainer.world_size if trainer is not None else 1
    if global_batch % ranks:
        raise UserError(
            f"data.batch_size={global_batch} (the global batch) does not split evenly over {ranks} devices; "
            f"use a multiple of {ranks}."
        )
    return global_batch // ranks
