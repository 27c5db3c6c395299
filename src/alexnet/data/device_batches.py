"""A loader for a dataset held whole on the device: each batch is one indexing op, with no workers and no copy.

Written by hand because ``DataLoader`` fetches samples one by one (or through a batch sampler) on the host and
collates them there, which is exactly the per-sample CPU work this path removes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler


class DeviceBatches:
    """Batches of ``(images[idx], labels[idx])`` from tensors that already live on the device.

    Training order: torch's ``DistributedSampler`` (shuffle with ``seed + epoch``, this rank's share, equal
    length on every rank); Lightning calls its ``set_epoch`` each epoch, so the order is reproducible and a
    resumed run sees the same batches. Evaluation: rank ``r`` takes samples ``r, r + world_size, ...`` with
    nothing repeated, so metrics summed over ranks count every sample exactly once.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.batch_sampler = None  # Lightning inspects a loader's `sampler` and `batch_sampler` to find its order
        if shuffle:
            self.sampler: DistributedSampler | None = DistributedSampler(
                range(len(images)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
            )
            self._count = len(self.sampler)
        else:
            self.sampler = None
            self._shard = torch.arange(rank, len(images), world_size, device=images.device)
            self._count = len(self._shard)

        self._served = 0  # batches handed out in the current pass
        # (epoch, batches to skip) restored from a mid-epoch checkpoint, applied when that epoch's pass starts
        self._resume: tuple[int, int] | None = None

    @property
    def epoch(self) -> int:
        return self.sampler.epoch if self.sampler is not None else 0

    def state_dict(self) -> dict[str, int]:
        """Position in the epoch; Lightning stores it in every checkpoint, so a mid-epoch resume continues the
        same permutation where it stopped instead of starting the epoch over."""
        return {"epoch": self.epoch, "served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        # Lightning restores a checkpoint saved at an epoch's end into the next epoch too: the position only
        # counts for the epoch it was saved in (set_epoch has been called by the time the pass starts).
        self._resume = (int(state["epoch"]), int(state["served"]))

    def __len__(self) -> int:
        return -(-self._count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._shard if self.sampler is None else torch.tensor(list(self.sampler), device=self.images.device)
        first = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        self._served = first
        for start in range(first * self.batch_size, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            self._served += 1
            yield self.images[index], self.labels[index]
