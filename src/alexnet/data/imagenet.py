"""ILSVRC-2012 (ImageNet) as a LightningDataModule, prepared the way the paper did.

Loader workers decode each JPEG, rescale its shorter side to ``resize_size`` (256) and cut the central
256x256 patch: compact uint8 tensors. Random crops, flips, PCA lighting, 10-crop testing and normalisation run
on the batch on the device in ``on_after_batch_transfer``. Under ``normalization=paper`` the training set's
mean 256x256 image is computed once (``prepare_data``) and cached next to ``train/``.
"""

from __future__ import annotations

import logging
from functools import partial
from importlib import resources
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from alexnet.data.batch_size import evaluation_sampler, per_device_batch_size
from alexnet.data.batch_transforms import pca_lighting, random_crop_flip, ten_crop
from alexnet.data.image_files import ClassFolders, as_seen, is_image_file
from alexnet.data.mean_image import MeanImageCache, files_fingerprint, mean_of_batches
from alexnet.data.normalization import PixelNormalization
from alexnet.errors import UserError

log = logging.getLogger(__name__)
LAYOUT = """Expected layout (ImageFolder, one folder per class, e.g. ILSVRC-2012 with 1000 wnid folders):
  <data.root>/train/n01440764/*.JPEG
  <data.root>/train/n01443537/*.JPEG  ...
  <data.root>/val/n01440764/*.JPEG    ...  (the validation images sorted into the same class folders)"""


def imagenet_class_names() -> dict[str, str]:
    """wnid -> WordNet lemmas for the 1000 ILSVRC-2012 classes, shipped with the package."""
    text = resources.files("alexnet.data").joinpath("imagenet_classes.tsv").read_text()
    return dict(line.split("\t", 1) for line in text.splitlines() if line)


def load_image(path: str, size: int, skip_unreadable: bool) -> torch.Tensor | None:
    """Decode any image file as the RGB picture a person sees (``as_seen``: grey, 16-bit, palette, transparent,
    CMYK, EXIF-rotated, PNG named .JPEG); shorter side ``size``, centre crop."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # lets JPEG decode at a reduced scale when the image is large
            rgb = as_seen(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        if not skip_unreadable:
            message = f"Unreadable image {path} ({error}); remove it or set data.skip_unreadable=true."
            raise UserError(message) from error
        log.warning("Skipping unreadable image %s (%s)", path, error)
        return None
    tensor = v2.functional.pil_to_tensor(rgb)
    tensor = v2.functional.resize(tensor, size, antialias=True)
    return v2.functional.center_crop(tensor, [size, size])


def collate_readable(batch: list[tuple[torch.Tensor | None, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the samples whose image could not be read (``load_image`` returned None)."""
    readable = [sample for sample in batch if sample[0] is not None]
    if not readable:
        raise UserError("Every image of a batch was unreadable; check the dataset files (see the warnings above).")
    return default_collate(readable)


class ImageNetDataModule(L.LightningDataModule):
    """ImageNet from ``<root>/train`` and ``<root>/val`` class folders, with the paper's augmentation.

    Args:
        root: folder holding ``train/`` and ``val/`` (see ``LAYOUT``).
        num_classes: class folders expected; must match the model's width.
        input_size: crop side (the model's input size, 224 or 227).
        channels: 3 for RGB nets (1 converts to grey).
        resize_size: shorter side and central square the loader prepares (the paper: 256).
        test_crops: 10 (four corners + centre and their mirrors, softmax averaged) or 1 (centre) for ``test``.
        lighting_std: standard deviation of the PCA lighting's alpha (the paper: 0.1; 0 turns it off).
        skip_unreadable: skip (with a warning naming the file) images that cannot be decoded; false stops.
        prefetch_factor: batches each worker prepares ahead, so JPEG decoding overlaps the GPU step.
        normalization: ``paper`` (raw 0-255 pixels minus the training set's mean image, computed once and
            cached as ``<root>/mean_image_train_<resize_size>px.pt``) or ``per_channel`` (``mean``/``std`` of
            [0, 1] pixels).
    """

    def __init__(
        self,
        root: str,
        num_classes: int = 1000,
        input_size: int = 224,
        channels: int = 3,
        batch_size: int = 128,
        num_workers: int = 8,
        pin_memory: bool = True,
        resize_size: int = 256,
        test_crops: int = 10,
        flip: bool = True,
        lighting_std: float = 0.1,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
        skip_unreadable: bool = True,
        prefetch_factor: int = 4,
        normalization: str = "per_channel",
    ) -> None:
        super().__init__()
        self.normalization = PixelNormalization(normalization, mean, std)
        if test_crops not in (1, 10):
            raise UserError(f"data.test_crops={test_crops!r}: use 10 (the paper's test) or 1 (centre crop).")
        if channels not in (1, 3):
            raise UserError(f"model.in_channels={channels}: ImageNet feeds 3 (RGB) or 1 (grey) channels.")
        if input_size > resize_size:
            raise UserError(f"model.input_size={input_size} is larger than data.resize_size={resize_size}.")
        self.root = Path(root).expanduser().absolute()
        self.num_classes, self.input_size, self.channels = num_classes, input_size, channels
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.resize_size, self.test_crops, self.flip, self.lighting_std = resize_size, test_crops, flip, lighting_std
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
        folder, classes = self.root / split, self._class_folders(split)
        train_folder = self.root / "train"
        if split != "train" and train_folder.is_dir() and classes != (train := self._class_folders("train")):
            only_here, only_train = sorted(set(classes) - set(train)), sorted(set(train) - set(classes))
            raise UserError(
                f"ImageNet: {folder} and {train_folder} must hold the same class folders ({len(classes)} and "
                f"{len(train)}; only in {split}/: {', '.join(only_here[:5]) or 'none'}; only in train/: "
                f"{', '.join(only_train[:5]) or 'none'}).\n{LAYOUT}"
            )
        if len(classes) != self.num_classes:
            raise UserError(
                f"ImageNet: {folder} has {len(classes)} class folders but data.num_classes={self.num_classes}; set "
                f"data.num_classes={len(classes)} (the model follows it) or fix the folder.\n{LAYOUT}"
            )
        loader = partial(load_image, size=self.resize_size, skip_unreadable=self.skip_unreadable)
        dataset = ClassFolders(str(folder), loader=loader, is_valid_file=is_image_file, allow_empty=True)
        counts = torch.bincount(torch.tensor(dataset.targets, dtype=torch.long), minlength=len(classes))
        empty = [c for c, n in zip(dataset.classes, counts.tolist(), strict=True) if n == 0]
        if empty:
            raise UserError(f"ImageNet: class folders without images in {folder}: {', '.join(empty[:5])}.\n{LAYOUT}")
        self.datasets[split] = dataset
        return dataset

    def class_names(self) -> list[str]:
        """Readable names in label order: from the class folders if present, else ILSVRC-2012's 1000 classes."""
        lemmas = imagenet_class_names()
        for split in ("val", "train"):
            if (self.root / split).is_dir():
                wnids = self._class_folders(split)
                break
        else:
            if self.num_classes != len(lemmas):
                return [f"class {i}" for i in range(self.num_classes)]
            wnids = sorted(lemmas)
        return [f"{w} {lemmas[w].split(',')[0]}" if w in lemmas else w for w in wnids]

    def read_image(self, path: str) -> torch.Tensor:
        """One image file as the loader would serve it (uint8, 3 x resize_size x resize_size)."""
        image = load_image(path, self.resize_size, skip_unreadable=False)
        assert image is not None
        return image

    def prepare_data(self) -> None:
        # Lightning runs this in one process per node before the others call setup(): the one place to check
        # (and if need be compute) the mean image without every rank reading the whole training set.
        if self.normalization.paper and self.normalization.mean_image is None:
            self.normalization.set_mean_image(self._mean_image_cache().get(self._fingerprint, self._average))

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self._split("train")
        self._split("val")
        if self.normalization.paper and self.normalization.mean_image is None:
            image = self._mean_image_cache().load_trusted()  # prepare_data has just checked it
            if image is not None:
                self.normalization.set_mean_image(image)

    def _mean_image_cache(self) -> MeanImageCache:
        name = f"mean_image_train_{self.resize_size}px.pt"
        return MeanImageCache(self.root, name, f"ImageNet {self.root / 'train'} at {self.resize_size} px")

    def _fingerprint(self) -> str:
        paths = [path for path, _ in self._split("train").samples]
        return files_fingerprint(self.root / "train", paths, f"imagenet resize_size={self.resize_size}")

    def _average(self) -> torch.Tensor:
        """Mean of the training images as the loader serves them (shorter side resize_size, central square)."""
        dataset = self._split("train")
        loader = DataLoader(
            dataset, batch_size=256, num_workers=self.num_workers, collate_fn=collate_readable, shuffle=False
        )
        return mean_of_batches((images for images, _ in loader), len(dataset), "mean image of ImageNet train/")

    def _require_mean_image(self) -> None:
        """Outside a Trainer (alexnet-predict) nothing called prepare_data: check or compute the mean now."""
        if self.normalization.paper and self.normalization.mean_image is None:
            self.prepare_data()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The mean image goes into every checkpoint: evaluating it later needs the mean it was trained with,
        not the training set."""
        image = self.normalization.mean_image
        return {"mean_image": image} if self.normalization.paper and image is not None else {}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        if "mean_image" in state_dict:
            self.normalization.set_mean_image(state_dict["mean_image"])

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
            collate_fn=collate_readable,
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

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int) -> tuple:
        images, labels = batch
        trainer = self.trainer
        if trainer is not None and trainer.training:
            stage = "train"
        elif trainer is not None and (trainer.testing or trainer.predicting):
            stage = "test"
        else:
            stage = "val"
        return self.model_input(images, stage), labels

    def model_input(self, images: torch.Tensor, stage: str) -> torch.Tensor:
        """uint8 (N, 3, 256, 256) -> float model input; ``test`` with 10 crops gives (N, 10, C, s, s)."""
        self._require_mean_image()
        # At full size, before the crop: the paper's mean image is then cropped and mirrored with the image.
        x = self.normalization.to_float(images)
        if stage == "train":
            x = random_crop_flip(x, self.input_size, self.flip)
        elif stage == "test" and self.test_crops == 10:
            x = ten_crop(x, self.input_size)
        else:
            x = v2.functional.center_crop(x, [self.input_size, self.input_size])
        if stage == "train":
            x = pca_lighting(x, self.lighting_std, scale=self.normalization.pixel_scale)
        if self.channels == 1:
            x = v2.functional.rgb_to_grayscale(x)
        return self.normalization.standardize(x)

    def _centre_view(self, x: torch.Tensor) -> torch.Tensor:
        x = v2.functional.center_crop(x, [self.input_size, self.input_size])
        return v2.functional.rgb_to_grayscale(x) if self.channels == 1 else x

    def picture(self, model_input: torch.Tensor) -> torch.Tensor:
        """A validation input (the centre crop) back to what it shows: uint8 RGB (N, 3, s, s)."""
        return self.normalization.to_picture(model_input, self._centre_view)

    def dataset(self, split: str) -> ImageFolder:
        """The ``train`` or ``val`` samples as (uint8 (3, resize_size, resize_size) image or None, label)."""
        return self._split(split)
