"""How a batch of uint8 pixels becomes model input: the 2012 paper's scale, or per-channel statistics.

- ``paper``: raw 0-255 pixels minus the training set's per-pixel mean image, nothing else (Krizhevsky et al.,
  section 2). The LRN constants (k=2, alpha=1e-4) and the N(0, 0.01) init with bias 1 were chosen at this scale.
- ``per_channel``: pixels scaled to [0, 1], then ``(x - mean) / std`` per channel (torchvision's convention).

Every data module turns its uint8 batch into model input in the same three steps, with its own crops, resizes
and augmentation in between: ``to_float`` on the full-size uint8 batch (the mean image has the loader's size, so
any crop or flip taken afterwards takes the same window of the mean, mirrored with the image), then the
geometry, then ``standardize``. ``pixel_scale`` tells colour augmentation defined on [0, 1] pixels (the paper's
PCA lighting) how much to scale its shift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

from alexnet.config.rules import check_values
from alexnet.errors import UserError


class PixelNormalization:
    """One data module's normalisation; under ``paper`` it holds the training set's mean image.

    Args:
        kind: ``paper`` or ``per_channel``.
        mean, std: per-channel statistics of [0, 1] pixels (one value, or one per source channel); used by
            ``per_channel`` only.
    """

    def __init__(self, kind: str, mean: Sequence[float], std: Sequence[float]) -> None:
        check_values({"data.normalization": kind, "data.mean": list(mean), "data.std": list(std)})
        self.kind = kind
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        if len(self.mean) != len(self.std):
            raise UserError(f"data.mean={self.mean} / data.std={self.std}: give as many of each.")
        self._mean_image: torch.Tensor | None = None
        self._device_copies: dict[torch.device, torch.Tensor] = {}

    @property
    def paper(self) -> bool:
        return self.kind == "paper"

    @property
    def pixel_scale(self) -> float:
        """Size of one unit of [0, 1] pixel intensity in the model input's units (before ``standardize``)."""
        return 255.0 if self.paper else 1.0

    @property
    def mean_image(self) -> torch.Tensor | None:
        """The training set's mean image, float32 (C, H, W) on the CPU, once it is known."""
        return self._mean_image

    def set_mean_image(self, image: torch.Tensor) -> None:
        self._mean_image = image.detach().to("cpu", torch.float32)
        self._device_copies = {}

    def to_float(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32: ``images - mean image`` (paper) or ``images / 255`` (per_channel)."""
        if not self.paper:
            return images.float() / 255
        if self._mean_image is None:
            raise RuntimeError("data.normalization=paper: the data module must set the mean image before use")
        mean = self._device_copies.get(images.device)
        if mean is None:
            mean = self._device_copies[images.device] = self._mean_image.to(images.device)
        if tuple(mean.shape) != tuple(images.shape[-3:]):
            raise UserError(
                f"The mean image is {tuple(mean.shape)} but the images are {tuple(images.shape[-3:])}: it was "
                "computed for other data settings. Use the data settings the model was trained with."
            )
        return images.float() - mean

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) -> unchanged (paper) or ``(x - mean) / std`` per channel (per_channel).

        One statistic serves every channel of a grey image replicated to RGB; an RGB image turned grey uses the
        channels' average.
        """
        if self.paper:
            return x
        mean, std = self._statistics(x.shape[-3])
        return v2.functional.normalize(x, mean=mean, std=std)

    def channel_statistics(self, channels: int) -> tuple[list[float], list[float]]:
        """``per_channel``'s mean and std for each channel of ``channels``-channel model input (what an exported
        model's description states)."""
        return self._statistics(channels)

    def _statistics(self, channels: int) -> tuple[list[float], list[float]]:
        mean, std = self.mean, self.std
        if len(mean) != channels:
            if len(mean) == 1:
                mean, std = mean * channels, std * channels
            elif channels == 1:
                mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
            else:
                raise UserError(
                    f"data.mean has {len(mean)} values for {channels}-channel images; give 1 or {channels}."
                )
        return mean, std

    def to_picture(self, x: torch.Tensor, geometry: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The inverse of ``to_float``, ``geometry``, ``standardize``: model input (..., C, H, W) back to the
        pixels it shows, uint8 RGB (..., 3, H, W), a grey image repeated on R, G and B.

        ``geometry`` is the deterministic crop or resize (and channel change) the data module applied between
        ``to_float`` and ``standardize``; under ``paper`` it gives the window of the mean image to add back
        (every step is linear, so ``geometry(images - mean) + geometry(mean) = geometry(images)``).
        """
        x = x.detach().float()
        if self.paper:
            assert self._mean_image is not None, "the mean image is set before any model input is made"
            pixels = x + geometry(self._mean_image.to(x.device)[None])
        else:
            mean, std = self._statistics(x.shape[-3])
            shape = (len(mean), 1, 1)
            mean_t = torch.tensor(mean, device=x.device).view(shape)
            std_t = torch.tensor(std, device=x.device).view(shape)
            pixels = (x * std_t + mean_t) * 255
        pixels = pixels.round().clamp(0, 255).to(torch.uint8)
        return pixels.expand(*pixels.shape[:-3], 3, *pixels.shape[-2:]) if pixels.shape[-3] == 1 else pixels
