"""The description written beside an exported model (``<model file>.json``): what it takes and what it gives.

- ``input``: name, dtype, shape with a dynamic batch, layout (NCHW, or NHWC for a uint8 graph), channels (RGB or
  grey), the side length;
- ``normalization``: ``per_channel`` (mean and std per input channel, of pixels scaled to [0, 1]) or ``paper``
  (raw 0-255 pixels minus the training set's mean image, saved beside as ``mean_image.npy``, float32 (C, H, W)
  at the size the loader serves, subtracted before the crop); with ``preprocess_in_graph`` the graph does it;
- ``pipeline``: every step from an image file to the input, in words;
- ``class_names`` in label order, ``checkpoint`` (path and SHA-256 of the file), ``run_config`` (the checkpoint's
  checked model and data settings, which ``alexnet-predict model_path=`` rebuilds the data pipeline from), and
  ``validation`` (the comparison with the checkpoint, ``validation.py``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from alexnet.data import ImageClassificationData
from alexnet.data.imagenet.pipeline import ImageNetInput
from alexnet.export.preprocessing import source_channels

MEAN_IMAGE_FILE = "mean_image.npy"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pipeline_steps(datamodule: ImageClassificationData, size: int, channels: int, preprocess: bool) -> list[str]:
    """The steps from an image file to the exported model's input, in words, as the data module takes them."""
    normalization = datamodule.normalization
    if isinstance(datamodule, ImageNetInput):
        steps = [
            "decode the file as an 8-bit RGB picture (EXIF orientation applied; grey, CMYK and palette converted)",
            f"resize the shorter side to {datamodule.resize_size} (bilinear) and keep the central "
            f"{datamodule.resize_size}x{datamodule.resize_size}",
        ]
        if normalization.paper and not preprocess:
            steps.append(f"as float, subtract {MEAN_IMAGE_FILE} (raw 0-255 values)")
        steps.append(f"centre crop {size}x{size} (10-crop: the four corners, the centre and their mirrors)")
        if channels == 1:
            steps.append("convert to grey (0.2989 R + 0.587 G + 0.114 B)")
    else:  # Fashion-MNIST: 28x28 grey images
        steps = ["decode the file, convert to grey (PIL convert('L')) and resize to 28x28 (PIL bilinear)"]
        if normalization.paper and not preprocess:
            steps.append(f"as float, subtract {MEAN_IMAGE_FILE} (the 28x28 mean, raw 0-255 values)")
        steps.append(f"resize to {size}x{size} (bilinear, antialiased) as float")
        if channels == 3:
            steps.append("repeat the grey image on R, G and B")
    if preprocess:
        steps.append("feed the uint8 pixels (RGB; the graph converts to grey where the net or data is grey)")
        steps.append("the graph normalises them itself")
    elif not normalization.paper:
        steps.append("scale to [0, 1] (divide by 255), then subtract mean and divide by std per channel")
    return steps


def normalization_spec(datamodule: ImageClassificationData, channels: int) -> dict[str, Any]:
    normalization = datamodule.normalization
    if normalization.paper:
        image = normalization.mean_image
        return {
            "kind": "paper",
            "pixels": "raw 0-255 values minus the training set's mean image",
            "mean_image": MEAN_IMAGE_FILE,
            "mean_image_shape": list(image.shape) if image is not None else None,
        }
    mean, std = normalization.channel_statistics(channels)
    return {"kind": "per_channel", "pixels": "[0, 1] (uint8 / 255), then (x - mean) / std", "mean": mean, "std": std}


def input_spec(
    *,
    fmt: str,
    model_file: str,
    datamodule: ImageClassificationData,
    model_cfg: DictConfig,
    data_cfg: DictConfig,
    class_names: list[str],
    checkpoint: Path,
    preprocess: bool,
    channels_last: bool,
) -> dict[str, Any]:
    size, channels = int(model_cfg.input_size), int(model_cfg.in_channels)
    if preprocess:
        shape = ["batch", size, size, 3] if channels_last else ["batch", 3, size, size]
        tensor = {"dtype": "uint8", "layout": "NHWC" if channels_last else "NCHW", "channels": "RGB"}
    else:
        shape = ["batch", channels, size, size]
        tensor = {"dtype": "float32", "layout": "NCHW", "channels": "RGB" if channels == 3 else "grey"}
    return {
        "format": fmt,
        "model_file": model_file,
        "input": {"name": "input", "shape": shape, **tensor, "size": size},
        "output": {
            "name": "logits",
            "shape": ["batch", len(class_names)],
            "meaning": "logits; softmax gives the class probabilities",
        },  # fmt: skip
        "preprocess_in_graph": preprocess,
        "normalization": normalization_spec(datamodule, channels),
        "data_channels": source_channels(datamodule),
        "pipeline": pipeline_steps(datamodule, size, channels, preprocess),
        "class_names": list(class_names),
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint)},
        "run_config": {"model": OmegaConf.to_container(model_cfg), "data": OmegaConf.to_container(data_cfg)},
        "torch": torch.__version__,
    }


def write_spec(path: Path, spec: dict[str, Any], datamodule: ImageClassificationData) -> None:
    """The JSON, and under ``paper`` the mean image beside it (``np.save``: a plain array, read back without
    pickle)."""
    image = datamodule.normalization.mean_image
    if datamodule.normalization.paper and image is not None:
        np.save(path.parent / MEAN_IMAGE_FILE, image.numpy().astype(np.float32), allow_pickle=False)
    path.write_text(json.dumps(spec, indent=2) + "\n")
