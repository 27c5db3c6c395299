"""Training batches through reused shared buffers: the same batches as PyTorch's collate, each intact for as long
as a training loop can still be using it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from alexnet.data.batch_buffers import ReusedBatchBuffers
from alexnet.data.imagenet.image_folder import ImageNetDataModule

PREFETCH = 2


def images_and_labels(n: int = 40) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=generator)
    return TensorDataset(images, torch.arange(n))


def loader(collate: object, batch_size: int = 3) -> DataLoader:
    return DataLoader(images_and_labels(), batch_size=batch_size, num_workers=1, prefetch_factor=PREFETCH,
                      collate_fn=collate)  # fmt: skip


def test_the_batches_equal_pytorch_s_collate_however_many_buffers_are_reused() -> None:
    expected = [(images.clone(), labels) for images, labels in loader(None)]
    got = [(images.clone(), labels) for images, labels in loader(ReusedBatchBuffers(PREFETCH + 3))]
    assert len(got) == len(expected) == 14  # 13 batches of 3 and a last one of 1: a second buffer shape
    for (a, la), (b, lb) in zip(expected, got, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_a_batch_stays_intact_while_a_training_loop_can_use_it() -> None:
    """Lightning fetches one batch ahead: batch k is in use until batch k + 2 is fetched. The worker writes at most
    ``prefetch_factor`` batches ahead of the last one fetched, so a ring of ``prefetch_factor + 3`` is never
    rewritten under it."""
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    for images, _ in loader(ReusedBatchBuffers(PREFETCH + 3)):
        kept.append((images, images.clone()))
        if len(kept) >= 3:
            in_use, copy = kept[-3]
            assert torch.equal(in_use, copy), "batch k changed before batch k + 2 was fetched"
    reused = [images for images, _ in kept[:-1]]  # without the smaller last batch
    assert len({images.data_ptr() for images in reused}) <= PREFETCH + 3 < len(reused), "the buffers are reused"


def test_in_the_training_process_itself_batches_are_collated_as_usual() -> None:
    batches = list(DataLoader(images_and_labels(), batch_size=4, collate_fn=ReusedBatchBuffers(2)))
    assert len({images.data_ptr() for images, _ in batches}) == len(batches) == 10


def test_imagenet_training_loaders_use_them_and_evaluation_loaders_do_not(imagenet_root: Path) -> None:
    dm = ImageNetDataModule(root=str(imagenet_root), num_classes=3, batch_size=4, num_workers=1, prefetch_factor=2)
    dm.setup("fit")
    assert isinstance(dm.train_dataloader().collate_fn, ReusedBatchBuffers)
    assert dm.train_dataloader().collate_fn.depth == 2 + 3
    assert not isinstance(dm.val_dataloader().collate_fn, ReusedBatchBuffers)
