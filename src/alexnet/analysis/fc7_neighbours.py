"""The paper's Figure 4 (right) search: the training images whose last-hidden-layer (FC7) activations are nearest,
in Euclidean distance, to a query image's.

The training images' features are computed once, in batches on the device, and cached in the run folder as a
float16 ``.npy`` file (memory-mapped: 8 KB per image for a 4096-wide FC7, written and searched without holding
them in memory), under a name keyed by the weights, the images and the model-input pipeline, so a later call
with anything changed computes them afresh. Queries are rounded to float16 too, so an image compared with its
own cached features is at distance 0.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate

from alexnet.errors import UserError

log = logging.getLogger(__name__)

ModelInput = Callable[[torch.Tensor, str], torch.Tensor]
FEATURE_DTYPE = np.float16
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass
class TrainingFeatures:
    features: np.ndarray  # (images, hidden) float16, memory-mapped
    indices: np.ndarray  # (images,) the dataset index of each row (unreadable images are left out)
    path: Path
    reused: bool  # read from the cache rather than computed


@torch.inference_mode()
def fc7(net: nn.Module, model_input: ModelInput, images: torch.Tensor) -> torch.Tensor:
    """FC7 activations of uint8 images (N, C, H, W), as the model sees them at validation (centre crop), rounded
    to the cache's float16."""
    device = next(net.parameters()).device
    hidden = net.last_hidden(model_input(images.to(device), "val")).float()
    if hidden.abs().max() > FLOAT16_MAX:
        raise ValueError(f"FC7 activations reach {float(hidden.abs().max()):.3g}, beyond float16's range.")
    return hidden.half().float()


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def weights_digest(net: nn.Module) -> str:
    state = net.state_dict()
    return _digest(*(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in state.items()),
                   *(_raw_bytes(v) for v in state.values()))  # fmt: skip


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()  # any dtype, bf16 too


def dataset_digest(dataset: Dataset) -> str:
    """What identifies the images: the tensors of an in-memory set (Fashion-MNIST), the relative file paths and
    labels of an ImageFolder (hashing 140 GB of JPEGs would take longer than the features), and the indices
    of a subset."""
    if isinstance(dataset, Subset):
        return _digest(dataset_digest(dataset.dataset), np.asarray(dataset.indices, dtype=np.int64).tobytes())
    if isinstance(dataset, TensorDataset):
        return _digest(*(_raw_bytes(t) for t in dataset.tensors))
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        root = str(getattr(dataset, "root", ""))
        return _digest(root, "\n".join(f"{os.path.relpath(path, root)}\t{label}" for path, label in samples))
    return _digest(type(dataset).__name__, str(len(dataset)))


def evenly_spaced(count: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all of them without a limit)."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(limit - 1, 1)) for i in range(limit)})


class _Indexed(Dataset):
    def __init__(self, dataset: Dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int]:
        return self.dataset[self.indices[i]][0], self.indices[i]


def _collate(batch: list[tuple[torch.Tensor | None, int]]) -> tuple[torch.Tensor, torch.Tensor] | None:
    readable = [sample for sample in batch if sample[0] is not None]  # an ImageNet loader skips unreadable files
    return default_collate(readable) if readable else None


def training_features(
    net: nn.Module,
    dataset: Dataset,
    model_input: ModelInput,
    cache_dir: Path,
    limit: int | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
) -> TrainingFeatures:
    """FC7 features of the training images (``limit`` of them, evenly spaced, or all), from the cache in
    ``cache_dir`` when the weights, images and pipeline are the same, else computed and cached."""
    net.eval()
    selection = evenly_spaced(len(dataset), limit)
    # The pipeline (size, normalisation) is identified by what it makes of a few images, to a rounding that
    # hides the last-bit differences between devices.
    probe = [image for image in (dataset[i][0] for i in selection[:4]) if image is not None]
    device = next(net.parameters()).device
    pipeline = b"".join(
        _raw_bytes(torch.round(model_input(image[None].to(device), "val").float() * 1000)) for image in probe
    )
    key = _digest(weights_digest(net), dataset_digest(dataset), pipeline, np.asarray(selection).tobytes())[:16]
    path = cache_dir / f"fc7_train_{key}.npy"
    index_path = cache_dir / f"fc7_train_{key}_indices.npy"
    if path.is_file() and index_path.is_file():
        indices = np.load(index_path)
        log.info("FC7 features of %d training images read from %s", len(indices), path)
        return TrainingFeatures(np.load(path, mmap_mode="r")[: len(indices)], indices, path, reused=True)

    cache_dir.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(_Indexed(dataset, selection), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate)  # fmt: skip
    partial = path.with_suffix(".partial")
    features, indices, filled = None, [], 0
    for batch in track(loader, description=f"FC7 features of {len(selection)} training images", total=len(loader)):
        if batch is None:
            continue
        images, batch_indices = batch
        hidden = fc7(net, model_input, images).cpu().numpy()
        if features is None:
            log.info("Caching %d x %d FC7 features (%.1f MB) in %s", len(selection), hidden.shape[1],
                     len(selection) * hidden.shape[1] * 2 / 2**20, path)  # fmt: skip
            shape = (len(selection), hidden.shape[1])
            features = np.lib.format.open_memmap(partial, mode="w+", dtype=FEATURE_DTYPE, shape=shape)
        features[filled : filled + len(hidden)] = hidden
        filled += len(hidden)
        indices.append(batch_indices.numpy())
    if features is None:
        raise UserError("No training image could be read to compute FC7 features of; check the dataset files.")
    features.flush()
    del features
    all_indices = np.concatenate(indices).astype(np.int64)
    np.save(index_path, all_indices)
    os.replace(partial, path)  # only a complete file gets the cache's name
    return TrainingFeatures(np.load(path, mmap_mode="r")[:filled], all_indices, path, reused=False)


@torch.inference_mode()
def nearest(
    train: TrainingFeatures, queries: torch.Tensor, k: int, chunk: int = 16384
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` training images nearest to each query (N, hidden): their dataset indices and Euclidean
    distances, nearest first, both (N, k). Distances are computed directly (not through the matrix-product
    shortcut, whose rounding would put an image at a small non-zero distance from itself)."""
    best_distances = torch.empty(len(queries), 0, device=queries.device)
    best_rows = torch.empty(len(queries), 0, dtype=torch.int64, device=queries.device)
    for start in range(0, len(train.features), chunk):
        block = torch.from_numpy(np.array(train.features[start : start + chunk], dtype=np.float32)).to(queries.device)
        distances = torch.cdist(queries[None], block[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
        rows = torch.arange(start, start + len(block), device=queries.device).expand(len(queries), -1)
        best_distances = torch.cat([best_distances, distances], dim=1)
        best_rows = torch.cat([best_rows, rows], dim=1)
        order = best_distances.topk(min(k, best_distances.shape[1]), dim=1, largest=False).indices
        best_distances, best_rows = best_distances.gather(1, order), best_rows.gather(1, order)
    indices = torch.from_numpy(train.indices)[best_rows.cpu()]
    return indices, best_distances.cpu()
