"""Lightning data modules; each serves compact uint8 batches and turns them into model input on the device.

``ImageClassificationData`` is what the rest of the project relies on beyond ``LightningDataModule``:
``alexnet-eval`` reads ``test_crops``, ``alexnet-predict`` feeds single files through ``read_image`` and
``model_input`` and names classes with ``class_names``, the W&B pictures caption with ``class_names`` and show
``picture`` of the model input, and alexnet-figures takes its images from ``dataset``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset


@runtime_checkable
class ImageClassificationData(Protocol):
    """The interface every data module of this project provides."""

    test_crops: int  # crops averaged per test image: 1, or the paper's 10

    def class_names(self) -> list[str]:
        """Readable class names, in label order."""
        ...

    def read_image(self, path: str) -> torch.Tensor:
        """One image file as the loader serves a sample: uint8 (C, H, W)."""
        ...

    def model_input(self, images: torch.Tensor, stage: str) -> torch.Tensor:
        """A uint8 batch (N, C, H, W) as the model sees it at ``stage`` (``train``, ``val`` or ``test``): float
        (N, C', s, s), or (N, crops, C', s, s) when ``test`` uses several crops."""
        ...

    def picture(self, model_input: torch.Tensor) -> torch.Tensor:
        """Model input (..., C', s, s) back to what it shows, for people: uint8 RGB (..., 3, s, s) on 0-255,
        undoing this module's own normalisation."""
        ...

    def dataset(self, split: str) -> Dataset:
        """The ``train`` or ``val`` samples, (uint8 image as ``read_image`` gives it, label), after ``setup``."""
        ...
