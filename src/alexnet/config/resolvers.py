"""The ``alexnet.*`` resolvers the config tree uses that know nothing of run folders (those are
``alexnet.run.folder``'s): registered when this module is imported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def env_or(name: str, default: str) -> str:
    """An environment variable's value; ``default`` when it is unset *or empty* (``oc.env`` would give "", and
    ``ALEXNET_LOG_DIR=`` would then write runs under /runs at the filesystem root)."""
    return os.environ.get(name) or default


def sqlite_url(path: str) -> str:
    """An SQLite URL for an Optuna study file; SQLite cannot create the folder itself."""
    file = Path(path).expanduser().absolute()
    file.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{file}"


def torchvision_weights_name(value: object) -> str | None:
    """``IMAGENET1K_V1`` (or ``DEFAULT``) when ``value`` names one of ``torchvision.models.AlexNet_Weights``, else
    None (a file path, or no weights)."""
    if not isinstance(value, str) or "/" in value or "." in value:
        return None
    from torchvision.models import AlexNet_Weights

    return value if value in AlexNet_Weights.__members__ else None


def weights_preprocessing(weights: object, key: str, default: Any) -> Any:
    """``data.*``'s value that follows ``model.weights``: with torchvision's weights, what their own preprocessing
    (``weights.transforms()``) uses (``mean``, ``std``, ``resize_size``), else ``default``."""
    name = torchvision_weights_name(weights)
    if name is None:
        return default
    from torchvision.models import AlexNet_Weights

    preset = AlexNet_Weights[name].transforms()
    value = {"mean": preset.mean, "std": preset.std, "resize_size": preset.resize_size}[key]
    return value[0] if key == "resize_size" else [float(v) for v in value]


def class_folder_count(root: str) -> int:
    """``data=image_folder``'s ``data.num_classes``: the visible folders of ``<root>/train``, else of ``<root>``
    (``alexnet.data.folder_layout``'s rule, which the data module applies again). Without such a folder, 2 (the
    fewest a classifier has): the config still builds (as ``data=imagenet``'s does without its data), and the data
    module names what it expected when it is set up."""
    folder = Path(root).expanduser()
    folder = folder / "train" if (folder / "train").is_dir() else folder
    if not folder.is_dir():
        return 2
    return sum(1 for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


OmegaConf.register_new_resolver("alexnet.weights_preprocessing", weights_preprocessing, replace=True)
OmegaConf.register_new_resolver("alexnet.class_folders", class_folder_count, replace=True)
OmegaConf.register_new_resolver("alexnet.sqlite", sqlite_url, replace=True)
OmegaConf.register_new_resolver("alexnet.env", env_or, replace=True)
