"""ILSVRC-2012 (ImageNet) as a LightningDataModule, prepared the way the paper did.

Loader workers decode each JPEG, rescale its shorter side to ``resize_size`` (256) and cut the central
256x256 patch, every epoch: compact uint8 tensors. Random crops, flips, PCA lighting, 10-crop testing and
normalisation run on the batch on the device (``ImageNetInput``, shared with ``data=imagenet_prepared``, which
reads patches ``alexnet-prepare`` decoded once instead). Under ``normalization=paper`` the training set's mean
256x256 image is computed once (``prepare_data``) and cached next to ``train/``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate
from torchvision.datasets import ImageFolder

from alexnet.data.batch_buffers import ReusedBatchBuffers
from alexnet.data.batch_size import evaluation_sampler, per_device_batch_size
from alexnet.data.image_files import IMAGE_EXTENSIONS, ClassFolders, is_image_file, load_image
from alexnet.data.imagenet.pipeline import ImageNetInput, imagenet_class_names
from alexnet.data.mean_image import MeanImageCache, files_fingerprint, mean_of_batches
from alexnet.errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "LAYOUT", "ImageNetDataModule", "collate_readable", "imagenet_class_names", "load_image"]

LAYOUT = """Expected layout (ImageFolder, one folder per class, e.g. ILSVRC-2012 with 1000 wnid folders):
  <data.root>/train/n01440764/*.JPEG
  <data.root>/train/n01443537/*.JPEG  ...
  <data.root>/val/n01440764/*.JPEG    ...  (the validation images sorted into the same class folders)"""


def readable(batch: list[tuple[torch.Tensor | None, int]]) -> list[tuple[torch.Tensor, int]]:
    """The samples whose image could be read (``load_image`` returns None for the others)."""
    found = [sample for sample in batch if sample[0] is not None]
    if not found:
        raise UserError("Every image of a batch was unreadable; check the dataset files (see the warnings above).")
    return found


def collate_readable(batch: list[tuple[torch.Tensor | None, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of the samples whose image could be read."""
    return default_collate(readable(batch))


class ImageNetDataModule(ImageNetInput):
    """ImageNet from ``<root>/train`` and ``<root>/val`` class folders, with the paper's augmentation.

    Args:
        root: folder holding ``train/`` and ``val/`` (see ``LAYOUT``).
        resize_size: shorter side and central square the loader prepares (the paper: 256).
        skip_unreadable: skip (with a warning naming the file) images that cannot be decoded; false stops.
        prefetch_factor: batches each worker prepares ahead, so JPEG decoding overlaps the GPU step.
        **pipeline: the on-device pipeline's settings (``num_classes``: class folders expected, ``input_size``,
            ``channels``, ``test_crops``, ``flip``, ``lighting_std``, ``mean``, ``std``, ``normalization``), as
            ``ImageNetInput`` documents them. Under ``normalization=paper`` the mean image is computed once and
            cached as ``<root>/mean_image_train_<resize_size>px.pt``.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 128,
        num_workers: int = 8,
        pin_memory: bool = True,
        resize_size: int = 256,
        skip_unreadable: bool = True,
        prefetch_factor: int = 4,
        **pipeline: Any,
    ) -> None:
        super().__init__(resize_size, **pipeline)
        self.root = Path(root).expanduser().absolute()
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.skip_unreadable, self.prefetch_factor = skip_unreadable, prefetch_factor
        self.datasets: dict[str, ImageFolder] = {}

    def _class_folders(self, split: str) -> list[str]:
        folder = self.root / split
        if not folder.is_dir():
            raise UserError(f"ImageNet: no {split}/ folder under data.root={self.root}.\n{LAYOUT}")
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def _split(self, split: str) -> ImageFolder:
        if split in self.datasets:
            return self.datasets[split]
        train_folder = self.root / "train"
        train = self._class_folders("train") if split != "train" and train_folder.is_dir() else None
        dataset = self._checked_class_folders(split, self.root / split, self._class_folders(split), train_folder, train)
        self.datasets[split] = dataset
        return dataset

    # What the messages call this module, its layout help and the dataset class it reads a folder with.
    NAME, LAYOUT_HELP, FOLDERS = "ImageNet", LAYOUT, ClassFolders

    def _checked_class_folders(
        self, split: str, folder: Path, classes: list[str], train_folder: Path, train: list[str] | None
    ) -> ClassFolders:
        """One split's images, after the checks every class-folder module makes: the same classes as train/
        (``train``; None: not compared), as many as the model's outputs, none without images."""
        name, help_ = self.NAME, self.LAYOUT_HELP
        if train is not None and classes != train:
            only_here, only_train = sorted(set(classes) - set(train)), sorted(set(train) - set(classes))
            raise UserError(
                f"{name}: {folder} and {train_folder} must hold the same class folders ({len(classes)} and "
                f"{len(train)}; only in {split}/: {', '.join(only_here[:5]) or 'none'}; only in train/: "
                f"{', '.join(only_train[:5]) or 'none'}).\n{help_}"
            )
        if len(classes) != self.num_classes:
            raise UserError(
                f"{name}: {folder} has {len(classes)} class folders but data.num_classes={self.num_classes}; set "
                f"data.num_classes={len(classes)} (the model follows it) or fix the folder.\n{help_}"
            )
        loader = partial(load_image, size=self.resize_size, skip_unreadable=self.skip_unreadable)
        dataset = self.FOLDERS(str(folder), loader=loader, is_valid_file=is_image_file, allow_empty=True)
        counts = torch.bincount(torch.tensor(dataset.targets, dtype=torch.long), minlength=len(classes))
        empty = [c for c, n in zip(dataset.classes, counts.tolist(), strict=True) if n == 0]
        if empty:
            raise UserError(
                f"{name}: class folders without images in {folder}: {', '.join(empty[:5])}. Add images (.jpg, "
                f".png...) or remove the folder.\n{help_}"
            )
        return dataset

    def wnids(self) -> list[str] | None:
        for split in ("val", "train"):
            if (self.root / split).is_dir():
                return self._class_folders(split)
        return None

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self._split("train")
        self._split("val")
        self._load_checked_mean_image()

    def _mean_image_cache(self) -> MeanImageCache:
        name = f"mean_image_train_{self.resize_size}px.pt"
        return MeanImageCache(self.root, name, f"ImageNet {self.root / 'train'} at {self.resize_size} px")

    def _fingerprint(self) -> str:
        paths = [path for path, _ in self._split("train").samples]
        return files_fingerprint(self.root / "train", paths, f"imagenet resize_size={self.resize_size}")

    def _average(self) -> torch.Tensor:
        dataset = self._split("train")
        loader = DataLoader(
            dataset, batch_size=256, num_workers=self.num_workers, collate_fn=collate_readable, shuffle=False
        )
        return mean_of_batches((images for images, _ in loader), len(dataset), "mean image of ImageNet train/")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self._split(split)
        return DataLoader(
            dataset,
            batch_size=per_device_batch_size(self.batch_size, self.trainer),
            shuffle=shuffle,
            sampler=None if shuffle else evaluation_sampler(dataset, self.trainer),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            # Training batches go through reused shared buffers (a fresh one per batch costs as much as decoding).
            collate_fn=ReusedBatchBuffers(self.prefetch_factor + 3, readable) if shuffle else collate_readable,
            drop_last=shuffle,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        # ILSVRC-2012's test labels are not public: the paper reports the validation set.
        return self._loader("val", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def dataset(self, split: str) -> ImageFolder:
        """The ``train`` or ``val`` samples as (uint8 (3, resize_size, resize_size) image or None, label)."""
        return self._split(split)
