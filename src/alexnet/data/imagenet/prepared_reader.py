"""ImageNet as ``alexnet-prepare`` wrote it: 256x256 patches in litdata chunks, streamed from a folder or a bucket.

The slow part of ``data=imagenet`` (decoding a full-size JPEG and rescaling it, every epoch) was done once; the
loader only decodes a 256x256 JPEG patch (``data.decode=cpu``, in the workers), hands its bytes to the training
GPU to decode a whole batch at once (``device``: torchvision's batched nvjpeg), or reads raw uint8 patches. The
same on-device crops, flips, PCA lighting, normalisation and 10-crop test as ``data=imagenet`` follow
(``ImageNetInput``).

The loaders (``prepared_batches.py``) read whole batches from the litdata chunks: each DDP rank its own share
of a full shuffle (chunk order and items in each chunk, reseeded per epoch), each loader worker its own run of
batches, JPEG patches decoded straight into reused NHWC buffers (handed to the model as an NCHW view). Their
position is stored in every checkpoint (Lightning keeps a loader's ``state_dict()``), so a run killed mid-epoch
resumes with the same samples in the same order. A bucket's chunks are cached locally as they are read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataset
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet.config.rules import check_values
from alexnet.data.batch_size import per_device_batch_size
from alexnet.data.imagenet.pipeline import ImageNetInput
from alexnet.data.imagenet.prepared_batches import PreparedBatches
from alexnet.data.imagenet.prepared_writer import MANIFEST, SPLITS, read_manifest
from alexnet.data.mean_image import MeanImageCache, fallback_cache_dir, mean_of_batches
from alexnet.data.storage import check_location, is_remote, join
from alexnet.errors import UserError


class DecodedSample:
    """A stored sample -> (uint8 image (3, S, S), label): the JPEG decoded in the loader worker, or the raw patch."""

    def __call__(self, sample: dict[str, Any]) -> tuple[torch.Tensor, int]:
        image = sample["image"]
        if isinstance(image, torch.Tensor):  # format=raw
            return image, sample["label"]
        data = torch.frombuffer(bytearray(image), dtype=torch.uint8)
        return decode_jpeg(data, mode=ImageReadMode.RGB), sample["label"]


class IndexedSamples(Dataset):
    """The first ``count`` samples of a streaming dataset, by index, decoded: a map-style dataset for a plain
    ``DataLoader`` that reads every sample whatever the rank."""

    def __init__(self, dataset: StreamingDataset, count: int) -> None:
        self.dataset, self.count, self.decoded = dataset, count, DecodedSample()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.decoded(self.dataset[index])


def decode_batch(images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """A list of JPEG byte tensors (on the CPU) -> uint8 (N, 3, S, S) on ``device``.

    One call decodes the whole batch: on a GPU torchvision hands it to nvjpeg's batched decoder; on a CPU it is
    the same decoder the loader workers use.
    """
    decoded = decode_jpeg(images, mode=ImageReadMode.RGB, device=device)
    # Stacked as NHWC and viewed as NCHW (channels-last): decode_jpeg's CPU output is HWC memory already.
    return torch.stack([image.permute(1, 2, 0) for image in decoded]).permute(0, 3, 1, 2)


class PreparedImageNetDataModule(ImageNetInput):
    """ILSVRC-2012 from ``alexnet-prepare``'s output, with the paper's augmentation on the device.

    Args:
        root: the prepared set: a folder or an ``s3://`` (``gs://``, ``r2://``) URL holding ``manifest.json``.
        cache_dir: where chunks of a remote ``root`` are cached locally and kept (null:
            ``~/.lightning/chunks/<hash of root>``); each split gets a subfolder.
        decode: ``cpu`` (loader workers decode each JPEG patch), ``device`` (workers only read bytes; the batch
            is decoded on the training device in one call, nvjpeg on a GPU) or ``auto`` (``device`` on CUDA).
            Raw patches need no decoding.
        seed: shuffle seed of the training order (null: the run's seed); reshuffled every epoch.
        batch_size, num_workers, pin_memory, prefetch_factor: as ``ImageNetDataModule``.
        **pipeline: the on-device pipeline's settings, as ``ImageNetInput`` documents them; ``num_classes`` must
            equal the manifest's class count. Under ``normalization=paper`` the mean of the prepared training
            patches is computed once and cached as ``<root>/mean_image_train_<side>px.pt`` (for a bucket: in
            ``$ALEXNET_CACHE_DIR/mean_images/``).
    """

    def __init__(
        self,
        root: str,
        cache_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 8,
        pin_memory: bool = True,
        prefetch_factor: int = 4,
        decode: str = "auto",
        seed: int | None = None,
        **pipeline: Any,
    ) -> None:
        check_values({"data.decode": decode, "data.seed": seed})
        super().__init__(None, **pipeline)  # the patch size is the manifest's, read when first needed
        self.root = check_location(root, "data.root")
        self._manifest: dict[str, Any] | None = None  # read when first needed, like data=imagenet's folders
        self.cache_dir = cache_dir
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.prefetch_factor, self.decode, self.seed = prefetch_factor, decode, seed
        self.decode_device = torch.device("cpu")  # where decode=device decodes outside a Trainer

    @property
    def manifest(self) -> dict[str, Any]:
        """The prepared set's manifest, checked against the model the first time it is needed."""
        if self._manifest is None:
            manifest = read_manifest(self.root)
            if manifest is None:
                raise UserError(
                    f"data.root={self.root} holds no finished prepared set (no {MANIFEST}). Write one with "
                    f"alexnet-prepare source=<ImageFolder copy> output={self.root} (an interrupted run continues)."
                )
            classes = manifest["classes"]
            if len(classes) != self.num_classes:
                raise UserError(
                    f"The prepared set in {self.root} has {len(classes)} classes but the model has "
                    f"{self.num_classes} outputs; set data.num_classes={len(classes)} (the model follows it)."
                )
            self.check_patch_size(manifest["resize_size"], "the prepared patches' resize_size")
            self.resize_size, self._manifest = manifest["resize_size"], manifest
        return self._manifest

    @property
    def format(self) -> str:
        return self.manifest["format"]

    def read_image(self, path: str) -> torch.Tensor:
        self.resize_size = self.manifest["resize_size"]  # a single file is cut to the prepared patches' size
        return super().read_image(path)

    def wnids(self) -> list[str]:
        return list(self.manifest["classes"])

    def decodes_on_device(self) -> bool:
        """Whether loaders hand out JPEG bytes for ``on_before_batch_transfer`` to decode, a batch at a time."""
        if self.format != "jpeg" or self.decode == "cpu":
            return False
        if self.decode == "device":
            return True
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def _split_record(self, split: str) -> dict[str, Any]:
        if split not in self.manifest["splits"]:
            prepared = ", ".join(self.manifest["splits"])
            raise UserError(
                f"The prepared set in {self.root} has no {split}/ split (it has {prepared}); prepare it with "
                f"alexnet-prepare splits=[{','.join(SPLITS)}]."
            )
        return self.manifest["splits"][split]

    def _location(self, split: str) -> tuple[str, str | None]:
        """The split's chunks and, for a bucket, the local folder they are cached in."""
        self._split_record(split)
        if not is_remote(self.root):
            return join(self.root, split), None
        default = Path.home() / ".lightning" / "chunks" / hashlib.sha256(self.root.encode()).hexdigest()[:12]
        return join(self.root, split), join(self.cache_dir or str(default), split)

    def _rank_and_world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        # As litdata reads them when no process group runs (a launcher's environment).
        return int(os.environ.get("GLOBAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def _seed(self) -> int:
        return self.seed if self.seed is not None else torch.initial_seed() % 2**31  # the run's seed

    def setup(self, stage: str | None = None) -> None:
        # The loaders are made after DDP has started (they read the rank and world size then).
        for split in ("train", "val") if stage in ("fit", None) else ("val",):
            self._location(split)  # a missing split is one clear error now, not when its loader is needed
        self._load_checked_mean_image()

    def _mean_image_cache(self) -> MeanImageCache:
        name = f"mean_image_train_{self.manifest['resize_size']}px.pt"
        description = f"prepared ImageNet {join(self.root, 'train')}"
        if not is_remote(self.root):
            return MeanImageCache(Path(self.root), name, description)
        folder = fallback_cache_dir() / "prepared" / hashlib.sha256(self.root.encode()).hexdigest()[:12]
        return MeanImageCache(folder, name, description)

    def _fingerprint(self) -> str:
        train = self._split_record("train")
        written = {key: self.manifest[key] for key in ("format", "jpeg_quality", "resize_size", "write_order_seed")}
        written |= {"source": train["source_fingerprint"], "images": train["images"]}
        return hashlib.sha256(json.dumps(written, sort_keys=True).encode()).hexdigest()

    def _average(self) -> torch.Tensor:
        """Mean of the prepared training patches as the loader serves them (JPEG patches decoded).

        Read by sample index, not through the streaming loader: prepare_data runs in one process per node while
        DDP is up, and the streaming loader would give that process only its rank's share.
        """
        samples = self.dataset("train")
        loader = DataLoader(samples, batch_size=256, num_workers=self.num_workers)
        return mean_of_batches((images for images, _ in loader), len(samples), "mean image of the prepared train/")

    def _loader(self, split: str) -> PreparedBatches:
        training = split == "train"
        location, cache = self._location(split)
        rank, world_size = self._rank_and_world()
        return PreparedBatches(
            location,
            cache,
            self.format,
            self.manifest["resize_size"],
            batch_size=per_device_batch_size(self.batch_size, self.trainer),
            shuffle=training,
            seed=self._seed(),
            rank=rank,
            world_size=world_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            encoded=self.decodes_on_device(),
            # Training batches go through reused shared buffers (a fresh one per batch costs as much as decoding);
            # evaluation batches may be kept by whoever reads them.
            reuse_buffers=training,
        )

    def train_dataloader(self) -> PreparedBatches:
        return self._loader("train")

    def val_dataloader(self) -> PreparedBatches:
        return self._loader("val")

    def test_dataloader(self) -> PreparedBatches:
        # ILSVRC-2012's test labels are not public: the paper reports the validation set.
        return self._loader("val")

    def predict_dataloader(self) -> PreparedBatches:
        return self._loader("val")

    def dataset(self, split: str) -> IndexedSamples:
        """The ``train`` or ``val`` samples by index, decoded: (uint8 (3, S, S) image, label)."""
        count = self._split_record(split)["images"]
        location, cache_dir = self._location(split)
        # batch_decode=0: one item unpacked per read (litdata's windows of 256 miss under random access).
        return IndexedSamples(StreamingDataset(location, cache_dir=cache_dir, batch_decode=0), count)

    def on_before_batch_transfer(self, batch: tuple, dataloader_idx: int) -> tuple:
        images, labels = batch
        if isinstance(images, list):  # JPEG bytes: decode the batch where it will be used
            device = self.trainer.strategy.root_device if self.trainer is not None else self.decode_device
            images = decode_batch(images, device)
        elif images.shape[-1] == 3 and self.format == "jpeg":  # NHWC from the workers: an NCHW view of it
            images = images.permute(0, 3, 1, 2)
        return images, labels
