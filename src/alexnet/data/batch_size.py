"""How a batch and an evaluation set are shared across data-parallel ranks.

``data.batch_size`` is the global batch (the paper's 128), split evenly across the ranks.
"""

from __future__ import annotations

from collections.abc import Sized

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DistributedSampler

from alexnet.errors import UserError


def per_device_batch_size(global_batch: int, trainer: L.Trainer | None) -> int:
    ranks = trainer.world_size if trainer is not None else 1
    if global_batch % ranks:
        raise UserError(
            f"data.batch_size={global_batch} (the global batch) does not split evenly over {ranks} devices; "
            f"use a multiple of {ranks}."
        )
    return global_batch // ranks


def evaluation_sampler(dataset: Sized, trainer: L.Trainer | None) -> DistributedSampler | None:
    """This rank's share of an evaluation set with nothing repeated.

    Lightning's default DistributedSampler pads the last round with repeated samples so every rank gets as
    many; those would be counted twice in validation and test metrics. Lightning leaves a loader that already
    has a DistributedSampler alone.
    """
    if trainer is None or trainer.world_size == 1:
        return None
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
