"""Transforms that run on a whole batch on the device, after it leaves the loader as uint8.

Per-sample CPU transforms (PIL resize in a DataLoader worker) starve a GPU running AlexNet; resizing a batch
of uint8 tensors on the device does not. torchvision's v2 transforms accept batched tensors, so they are used
as they are.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from alexnet.errors import UserError

# The paper's "fancy PCA" lighting: eigen-decomposition of ImageNet's RGB covariance on [0, 1] pixels.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def random_crop_flip(images: torch.Tensor, size: int, flip: bool = True) -> torch.Tensor:
    """A different random ``size`` crop (and coin-flip mirror) for every image of the batch.

    torchvision's RandomCrop/RandomHorizontalFlip draw one crop and one flip for a whole batched tensor;
    the paper draws them per image, so this gathers per-image windows with one indexing operation.
    """
    n, _, height, width = images.shape
    if height < size or width < size:
        raise UserError(f"images of {height}x{width} cannot give {size}x{size} crops; raise data.resize_size.")
    device = images.device
    top = torch.randint(0, height - size + 1, (n,), device=device)
    left = torch.randint(0, width - size + 1, (n,), device=device)
    steps = torch.arange(size, device=device)
    rows = (top[:, None] + steps)[:, :, None]  # (N, size, 1)
    cols = (left[:, None] + steps)[:, None, :]  # (N, 1, size)
    if flip:
        mirrored = torch.rand(n, device=device) < 0.5
        cols = torch.where(mirrored[:, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=device)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def pca_lighting(images: torch.Tensor, std: float, scale: float = 1.0) -> torch.Tensor:
    """Add ``sum_i alpha_i * lambda_i * p_i`` (alpha_i ~ N(0, std), one draw per image) to RGB pixels.

    The eigenvalues are those of [0, 1] pixels; ``scale`` is the size of one such unit in ``images`` (255 for
    the paper's raw 0-255 pixels), and the shift is multiplied by it.
    """
    if std <= 0:
        return images
    eigval = torch.tensor(IMAGENET_EIGVAL, device=images.device, dtype=images.dtype)
    eigvec = torch.tensor(IMAGENET_EIGVEC, device=images.device, dtype=images.dtype)
    alpha = torch.randn(images.shape[0], 3, device=images.device, dtype=images.dtype) * std
    shift = (alpha * eigval) @ eigvec.T * scale  # (N, 3): row n is sum_i alpha_ni * lambda_i * p_i
    return images + shift[:, :, None, None]


def ten_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, 10, C, size, size): four corners and the centre, then the same mirrored."""
    return torch.stack(v2.functional.ten_crop(images, [size, size]), dim=1)
