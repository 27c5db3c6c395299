"""What every ImageNet data module shares: the paper's on-device pipeline from uint8 256x256 patches to model input.

``ImageNetDataModule`` (ImageFolder, decoded every epoch) and ``PreparedImageNetDataModule`` (the patches
``alexnet-prepare`` wrote once) both serve uint8 ``(N, 3, resize_size, resize_size)`` batches; this class turns
them into model input on the device (normalisation, random crop and mirror per image, PCA lighting; centre crop
for validation; 10 crops for test), keeps the training set's mean image under ``normalization=paper`` (computed
once through a ``MeanImageCache``, carried in checkpoints), reads a single image file as the loaders would
(``alexnet-predict``) and names the classes. A change to the input pipeline belongs here, so that both modules
get it.
"""

from __future__ import annotations

from importlib import resources

import lightning as L
import torch
from torchvision.transforms import v2

from alexnet.config.rules import check_values
from alexnet.data.batch_transforms import pca_lighting, random_crop_flip, ten_crop
from alexnet.data.image_files import load_image
from alexnet.data.mean_image import MeanImageCache
from alexnet.data.normalization import PixelNormalization
from alexnet.errors import UserError


def imagenet_class_names() -> dict[str, str]:
    """wnid -> WordNet lemmas for the 1000 ILSVRC-2012 classes, shipped with the package."""
    text = resources.files("alexnet.data.imagenet").joinpath("classes.tsv").read_text()
    return dict(line.split("\t", 1) for line in text.splitlines() if line)


def readable_names(wnids: list[str]) -> list[str]:
    """``n01440764 tench`` for a known wnid, the wnid itself otherwise."""
    lemmas = imagenet_class_names()
    return [f"{w} {lemmas[w].split(',')[0]}" if w in lemmas else w for w in wnids]


def batch_stage(trainer: L.Trainer | None) -> str:
    """``train``, ``val`` or ``test`` (test and predict use the test-time crops)."""
    if trainer is not None and trainer.training:
        return "train"
    if trainer is not None and (trainer.testing or trainer.predicting):
        return "test"
    return "val"


class ImageNetInput(L.LightningDataModule):
    """The paper's input pipeline on the device, for data modules that serve uint8 256x256 ImageNet patches.

    Args:
        num_classes: classes the data holds; must match the model's width.
        input_size: crop side (the model's input size, 224 or 227).
        channels: 3 for RGB nets (1 converts to grey).
        resize_size: side of the square patches the loader serves (the paper: 256); None while unknown (a
            subclass that learns it from its data sets it and calls ``check_patch_size``).
        patch_source: the setting ``resize_size`` comes from, for the message when the crop does not fit.
        test_crops: 10 (four corners + centre and their mirrors, softmax averaged) or 1 (centre) for ``test``.
        flip: mirror half of the training crops.
        lighting_std: standard deviation of the PCA lighting's alpha (the paper: 0.1; 0 turns it off).
        mean, std: per-channel statistics of [0, 1] pixels (``per_channel`` only).
        normalization: ``paper`` (raw 0-255 pixels minus the training set's mean image) or ``per_channel``.

    A subclass says where its training images are: ``_mean_image_cache``, ``_fingerprint`` and ``_average``.
    """

    def __init__(
        self,
        resize_size: int | None,
        num_classes: int = 1000,
        input_size: int = 224,
        channels: int = 3,
        test_crops: int = 10,
        flip: bool = True,
        lighting_std: float = 0.1,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
        normalization: str = "per_channel",
        patch_source: str = "data.resize_size",
    ) -> None:
        super().__init__()
        self.normalization = PixelNormalization(normalization, mean, std)
        check_values({"data.test_crops": test_crops, "data.channels": channels, "data.lighting_std": lighting_std})
        self.num_classes, self.input_size, self.channels = num_classes, input_size, channels
        self.test_crops, self.flip, self.lighting_std = test_crops, flip, lighting_std
        self.resize_size = resize_size
        if resize_size is not None:
            self.check_patch_size(resize_size, patch_source)

    def check_patch_size(self, resize_size: int, source: str) -> None:
        if self.input_size > resize_size:
            raise UserError(f"model.input_size={self.input_size} is larger than {source}={resize_size}.")

    # -- where the training images are (a subclass says) -------------------------------------------------------

    def _mean_image_cache(self) -> MeanImageCache:
        raise NotImplementedError

    def _fingerprint(self) -> str:
        """What the mean image was computed from; a cache with another fingerprint is stale."""
        raise NotImplementedError

    def _average(self) -> torch.Tensor:
        """Mean of the training images as the loader serves them, float32 (3, resize_size, resize_size)."""
        raise NotImplementedError

    def wnids(self) -> list[str] | None:
        """The classes' wnids in label order, where the data says them."""
        return None

    # -- the mean image (normalization=paper) ------------------------------------------------------------------

    def prepare_data(self) -> None:
        # Lightning runs this in one process per node before the others call setup(): the one place to check
        # (and if need be compute) the mean image without every rank reading the whole training set.
        if self.normalization.paper and self.normalization.mean_image is None:
            self.normalization.set_mean_image(self._mean_image_cache().get(self._fingerprint, self._average))

    def _load_checked_mean_image(self) -> None:
        """In setup(): the mean image prepare_data (on this node's first process) has just checked."""
        if self.normalization.paper and self.normalization.mean_image is None:
            image = self._mean_image_cache().load_trusted()
            if image is not None:
                self.normalization.set_mean_image(image)

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

    # -- classes, single files, batches ------------------------------------------------------------------------

    def class_names(self) -> list[str]:
        """Readable names in label order: from the data's wnids, else ILSVRC-2012's 1000 classes."""
        wnids = self.wnids()
        if wnids is None:
            lemmas = imagenet_class_names()
            if self.num_classes != len(lemmas):
                return [f"class {i}" for i in range(self.num_classes)]
            wnids = sorted(lemmas)
        return readable_names(wnids)

    def read_image(self, path: str) -> torch.Tensor:
        """One image file as the loader would serve it (uint8, 3 x resize_size x resize_size)."""
        image = load_image(path, self.resize_size, skip_unreadable=False)
        assert image is not None
        return image

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int) -> tuple:
        images, labels = batch
        return self.model_input(images, batch_stage(self.trainer)), labels

    def _centre_view(self, x: torch.Tensor) -> torch.Tensor:
        x = v2.functional.center_crop(x, [self.input_size, self.input_size])
        return v2.functional.rgb_to_grayscale(x) if self.channels == 1 else x

    def picture(self, model_input: torch.Tensor) -> torch.Tensor:
        """A validation input (the centre crop) back to what it shows: uint8 RGB (N, 3, s, s)."""
        return self.normalization.to_picture(model_input, self._centre_view)

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
