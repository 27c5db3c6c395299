"""Training batches written into shared-memory buffers that each loader worker reuses.

A DataLoader worker hands each batch to the training process through shared memory, and PyTorch's collate
allocates a fresh shared-memory segment for every batch. Filling fresh memory costs a page fault per 4 KiB
page, which on a virtual machine costs about as much as decoding a 256x256 JPEG: measured here, one worker hands
over 4,700 uint8 256x256 images/s through fresh segments and 22,000 through reused ones. PyTorch has no option
to reuse them, hence this collate function.

A buffer is rewritten ``depth`` batches later, so the training process must be done with a batch by then: true
of a training loader that Lightning consumes one step at a time (its loop fetches one batch ahead and the
worker runs at most ``prefetch_factor`` batches ahead of that; each batch is copied to the GPU or cropped into
new tensors in ``on_after_batch_transfer``). Evaluation loaders and anything that keeps batches use the
ordinary collate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import default_collate, get_worker_info


class ReusedBatchBuffers:
    """A collate function for ``(uint8 image, label)`` samples whose image batch goes into one of ``depth``
    shared-memory buffers of this worker, in turn. In the training process itself (no workers) the batch is
    collated as usual.

    Args:
        depth: buffers per worker and batch shape; at least ``prefetch_factor + 3``.
        samples: turns the loader's list of samples into ``(images, labels)`` lists, e.g. dropping unreadable
            ones; by default the samples are used as they are.
    """

    def __init__(self, depth: int, samples: Callable[[list], list] | None = None) -> None:
        self.depth, self.samples = depth, samples
        self._rings: dict[tuple[int, ...], list[torch.Tensor]] = {}
        self._turn = 0

    def __call__(self, batch: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.samples is not None:
            batch = self.samples(batch)
        if get_worker_info() is None:
            return default_collate(batch)
        images = [image for image, _ in batch]
        shape = (len(images), *images[0].shape)
        ring = self._rings.get(shape)
        if ring is None:  # one ring per shape: the last batch of an epoch may be smaller
            ring = self._rings[shape] = [
                torch.empty(shape, dtype=images[0].dtype).share_memory_() for _ in range(self.depth)
            ]
        out = ring[self._turn % self.depth]
        self._turn += 1
        torch.stack(images, out=out)
        return out, default_collate([label for _, label in batch])
