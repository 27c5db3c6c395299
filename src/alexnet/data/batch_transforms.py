"""Transforms that run on a whole batch on the device, after it leaves the loader as uint8.

Per-sample CPU transforms (PIL resize in a DataLoader worker) starve a GPU running AlexNet; resizing a batch
of uint8 tensors on the device does not. torchvision's v2 transforms accept batched tensors, so they are used
as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from alexnet.errors import UserError


def to_model_input(size: int, channels: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """uint8 (N, C, H, W) -> float32 (N, channels, size, size), scaled to [0, 1] then normalised.

    ``mean``/``std`` give one value per source channel; a 1-channel source fed to a 3-channel model is
    replicated to RGB, and its statistics with it.
    """
    if channels not in (1, 3):
        raise UserError(f"model.in_channels={channels}: the data can feed 1 (grey) or 3 (RGB) channels.")
    steps: list[v2.Transform] = []
    if channels == 3:
        steps.append(v2.RGB())
        mean, std = _to_three(mean), _to_three(std)
    elif len(mean) != 1:
        steps.append(v2.Grayscale(num_output_channels=1))
        mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Resize((size, size), antialias=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]
    return v2.Compose(steps)


def _to_three(values: Sequence[float]) -> list[float]:
    return list(values) * 3 if len(values) == 1 else list(values)
