"""The ``alexnet.*`` resolvers the config tree uses that know nothing of run folders (those are
``alexnet.run.folder``'s): registered when this module is imported."""

from __future__ import annotations

import os
from pathlib import Path

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


OmegaConf.register_new_resolver("alexnet.sqlite", sqlite_url, replace=True)
OmegaConf.register_new_resolver("alexnet.env", env_or, replace=True)
