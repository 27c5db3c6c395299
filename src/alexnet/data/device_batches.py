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

    def __len__(self) -> int:
        return -(-self._count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._shard if self.sampler is None else torch.tensor(list(self.sampler), device=self.images.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]
