"""Fashion-MNIST (Xiao et al., 2017) as a LightningDataModule, served at AlexNet's input size.

Samples stay 28x28 uint8 tensors in the loader (47 MB for the whole set); resizing, channel replication and
normalisation happen on the batch on the device in ``on_after_batch_transfer``. Under ``normalization=paper``
the mean 28x28 image of the training images (those not held out for validation) is cached next to the files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split
from torchvision.datasets import FashionMNIST
from torchvision.transforms import v2

from alexnet.config.rules import check_values
from alexnet.data.batch_size import evaluation_sampler, per_device_batch_size
from alexnet.data.device_batches import DeviceBatches
from alexnet.data.image_files import as_seen
from alexnet.data.mean_image import MeanImageCache, bytes_fingerprint, mean_of_batches
from alexnet.data.normalization import PixelNormalization
from alexnet.errors import UserError

log = logging.getLogger(__name__)

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class FashionMNISTDataModule(L.LightningDataModule):
    """Fashion-MNIST train/validation split (fixed seed) and the official 10,000-image test set.

    Args:
        num_classes: must be 10; declared in the config so the model's width can follow it.
        root: folder holding ``FashionMNIST/raw/`` (torchvision's layout); downloaded there if ``download``.
        input_size: side the images are resized to on the device (the model's input size).
        channels: 1 feeds the grey image, 3 replicates it to RGB for 3-channel nets.
        val_size: images held out of the 60,000 training images, as a count or a fraction; 0 trains on all of
            them and validates on the test set (d2l's protocol).
        split_seed: seed of the train/validation split, independent of the run's seed.
        on_device: hold the whole uint8 set on the training device (47 MB) and serve batches by indexing it
            there, instead of a host ``DataLoader``; falls back, with a warning, when the GPU lacks room.
        normalization: ``per_channel`` (``mean``/``std`` of [0, 1] pixels) or ``paper`` (raw 0-255 pixels minus
            the training images' mean image, cached as ``FashionMNIST/mean_image_train_<split>.pt``).
    """

    num_classes = len(CLASSES)
    test_crops = 1  # 28x28 images: the test sees the whole (resized) image

    def __init__(
        self,
        root: str,
        num_classes: int = 10,
        input_size: int = 224,
        channels: int = 1,
        batch_size: int = 128,
        val_size: int | float = 5000,
        split_seed: int = 42,
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = True,
        mean: tuple[float, ...] = (0.2860,),
        std: tuple[float, ...] = (0.3530,),
        on_device: bool = False,
        normalization: str = "per_channel",
    ) -> None:
        super().__init__()
        if num_classes != len(CLASSES):
            raise UserError(f"data.num_classes={num_classes!r}: Fashion-MNIST has {len(CLASSES)} classes.")
        self.root = Path(root).expanduser().absolute()
        self.batch_size, self.val_size, self.split_seed = batch_size, val_size, split_seed
        self.num_workers, self.pin_memory, self.download = num_workers, pin_memory, download
        self.on_device = on_device
        check_values({"data.channels": channels, "data.batch_size": batch_size, "data.val_size": val_size})
        self.input_size, self.channels = input_size, channels
        self.normalization = PixelNormalization(normalization, mean, std)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def raw_folder(self) -> Path:
        return self.root / "FashionMNIST" / "raw"

    def _missing_files(self) -> list[Path]:
        return [self.raw_folder / name for name in FILES if not (self.raw_folder / name).is_file()]

    def _not_found(self, reason: str) -> UserError:
        listing = "\n".join(f"  {self.raw_folder / name}" for name in FILES)
        return UserError(
            f"Fashion-MNIST is not under data.root={self.root} ({reason}). Expected the uncompressed IDX files\n"
            f"{listing}\nDownload them from https://github.com/zalandoresearch/fashion-mnist (gunzip the .gz "
            "files), or point the run at a folder that holds FashionMNIST/raw/: alexnet-train data.root=/path"
        )

    def prepare_data(self) -> None:
        if not self._missing_files():
            return
        if not self.download:
            raise self._not_found("data.download=false")
        try:
            FashionMNIST(str(self.root), download=True)
        except Exception as error:  # torchvision raises RuntimeError or URLError, depending on the failure
            reason = " ".join(str(error).split())[:300]
            raise self._not_found(f"download failed: {reason}") from error

    def _load(self, train: bool) -> TensorDataset:
        missing = self._missing_files()
        if missing:
            raise self._not_found(f"missing {', '.join(p.name for p in missing)}")
        try:
            dataset = FashionMNIST(str(self.root), train=train, download=False)
        except Exception as error:
            raise UserError(
                f"Could not read the Fashion-MNIST IDX files in {self.raw_folder} ({error!r}); they are "
                "truncated or not IDX files. Delete them and run again to re-download."
            ) from error
        images, labels = dataset.data, dataset.targets
        if images.dim() != 3 or len(images) != len(labels) or labels.min() < 0 or labels.max() >= 10:
            raise UserError(
                f"The Fashion-MNIST files in {self.raw_folder} do not match: {tuple(images.shape)} images, "
                f"{tuple(labels.shape)} labels in [{labels.min()}, {labels.max()}]. Delete them and re-download."
            )
        return TensorDataset(images.unsqueeze(1), labels)  # (N, 1, 28, 28) uint8, kept compact

    def _held_out(self, total: int) -> int:
        n_val = round(self.val_size * total) if isinstance(self.val_size, float) else self.val_size
        if not isinstance(n_val, int) or not 0 <= n_val < total:
            raise UserError(
                f"data.val_size={self.val_size} leaves no training images out of {total}; use a count below "
                f"{total}, a fraction such as 0.1, or 0 to train on all of them and validate on the test set."
            )
        return n_val

    def _training_split(self) -> tuple[Dataset, Dataset | None]:
        """The training images and the held-out validation images (None when data.val_size=0)."""
        full = self._load(train=True)
        n_val = self._held_out(len(full))
        if n_val == 0:
            return full, None
        generator = torch.Generator().manual_seed(self.split_seed)
        train_set, val_set = random_split(full, [len(full) - n_val, n_val], generator=generator)
        return train_set, val_set

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate", None) and self.train_set is None:
            self.train_set, self.val_set = self._training_split()
            if self.val_set is None:
                log.info(
                    "data.val_size=0: training on all %d training images and validating on the test set.",
                    len(self.train_set),
                )
                self.test_set = self.test_set or self._load(train=False)
                self.val_set = self.test_set
        if stage in ("test", None) and self.test_set is None:
            self.test_set = self._load(train=False)
        self._require_mean_image()

    def _require_mean_image(self) -> None:
        """Under ``paper``: the cached mean of the training images, checked against the files (a hash of 47 MB
        and an average of at most 60,000 small images: cheap enough for every process to do it itself)."""
        if not self.normalization.paper or self.normalization.mean_image is not None:
            return
        images_file = self.raw_folder / FILES[0]
        split = "all" if self.val_size == 0 else f"holdout{self.val_size}_seed{self.split_seed}"
        cache = MeanImageCache(self.raw_folder.parent, f"mean_image_train_{split}.pt", f"Fashion-MNIST {images_file}")

        def fingerprint() -> str:
            if not images_file.is_file():
                raise self._not_found(f"missing {images_file.name}")
            return bytes_fingerprint(images_file, f"fashion_mnist training images {split}")

        def average() -> torch.Tensor:
            train_set = self.train_set if self.train_set is not None else self._training_split()[0]
            whole = train_set.dataset if isinstance(train_set, Subset) else train_set
            index = torch.as_tensor(train_set.indices) if isinstance(train_set, Subset) else slice(None)
            images = whole.tensors[0][index]
            return mean_of_batches(images.split(4096), len(images), "mean image of the Fashion-MNIST training images")

        self.normalization.set_mean_image(cache.get(fingerprint, average))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The mean image goes into every checkpoint, so evaluating it later uses the mean it was trained with."""
        image = self.normalization.mean_image
        return {"mean_image": image} if self.normalization.paper and image is not None else {}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        if "mean_image" in state_dict:
            self.normalization.set_mean_image(state_dict["mean_image"])

    def _device_for_data(self, dataset: TensorDataset) -> torch.device | None:
        """The device to hold ``dataset`` on, or None to serve it from host memory."""
        if not self.on_device or self.trainer is None:
            return None
        device = self.trainer.strategy.root_device
        if device.type == "cuda":
            needed = sum(t.numel() * t.element_size() for t in dataset.tensors)
            free = torch.cuda.mem_get_info(device)[0]
            if needed > free // 4:  # leave the model and its activations most of the memory
                log.warning(
                    "data.on_device=true: the Fashion-MNIST tensors need %d MB, more than a quarter of the %d MB "
                    "free on %s; serving them from host memory instead.",
                    needed >> 20,
                    free >> 20,
                    device,
                )
                return None
        return device

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader | DeviceBatches:
        assert dataset is not None, "setup() runs before the loaders are asked for"
        batch_size = per_device_batch_size(self.batch_size, self.trainer)
        whole = dataset.dataset if isinstance(dataset, Subset) else dataset
        assert isinstance(whole, TensorDataset)
        device = self._device_for_data(whole)
        if device is not None:
            index = torch.as_tensor(dataset.indices) if isinstance(dataset, Subset) else slice(None)
            images, labels = (t[index].to(device) for t in whole.tensors)
            return DeviceBatches(
                images,
                labels,
                batch_size,
                shuffle,
                seed=torch.initial_seed() % 2**31,  # the run's seed: the same order after a resume
                rank=self.trainer.global_rank,
                world_size=self.trainer.world_size,
            )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=None if shuffle else evaluation_sampler(dataset, self.trainer),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.test_set, shuffle=False)

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int) -> tuple:
        images, labels = batch
        return self.model_input(images), labels

    def model_input(self, images: torch.Tensor, stage: str = "test") -> torch.Tensor:
        """uint8 (N, 1, 28, 28) -> normalised float (N, channels, size, size); the same for every stage."""
        self._require_mean_image()
        # paper: the 28x28 mean image is subtracted before resizing
        return self.normalization.standardize(self._geometry(self.normalization.to_float(images)))

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        x = v2.functional.resize(x, [self.input_size, self.input_size], antialias=True)
        return x.repeat(1, 3, 1, 1) if self.channels == 3 else x  # the grey image on every RGB channel

    def picture(self, model_input: torch.Tensor) -> torch.Tensor:
        """Model input back to what it shows: uint8 RGB (N, 3, size, size), the grey image repeated."""
        return self.normalization.to_picture(model_input, self._geometry)

    def dataset(self, split: str) -> Dataset:
        """The ``train``, ``val`` or ``test`` samples as (uint8 (1, 28, 28) image, label), after ``setup``."""
        found = {"train": self.train_set, "val": self.val_set, "test": self.test_set}.get(split)
        assert found is not None, f"setup() has not loaded the {split!r} split"
        return found

    def class_names(self) -> list[str]:
        return list(CLASSES)

    def read_image(self, path: str) -> torch.Tensor:
        """Any image file as a Fashion-MNIST sample: the grey picture a person sees (``as_seen``), 28x28, uint8
        (1, 28, 28)."""
        try:
            with Image.open(path) as image:
                grey = as_seen(image).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
        except (OSError, ValueError, SyntaxError) as error:
            raise UserError(f"Unreadable image {path} ({error}).") from error
        return v2.functional.pil_to_tensor(grey)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: big-endian magic 0x0000080<ndim> (uint8 data), then each dimension as a big-endian int32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = np.array([0x800 + array.ndim, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_random_fashion_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random 28x28 images with random labels in torchvision's layout, for speed measurements offline."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "FashionMNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, len(CLASSES), size=n))
    return Path(root)
