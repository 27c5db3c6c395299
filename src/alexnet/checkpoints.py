"""Rebuild a trained net from a checkpoint's own saved config (not today's defaults), safely."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from alexnet.errors import UserError
from alexnet.model import AlexNet, net_weights


def existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt_path={path}: no such file. Checkpoints are in <run folder>/checkpoints/.")
    return path


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at. Memory-mapped, so the weights are not read:
    the checkpoint is about to be loaded in full by the Trainer."""
    path = existing_file(path)
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception as error:  # truncated zip, not a torch file, no global_step
        raise UserError(f"ckpt_path={path} is not a readable Lightning checkpoint ({type(error).__name__}).") from error


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint written by alexnet-train, loaded with ``weights_only=True``."""
    path = existing_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle of foreign objects, not a torch file at all
        raise UserError(f"ckpt_path={path} is not a readable checkpoint ({type(error).__name__}: {error}).") from error
    run_config = checkpoint.get("hyper_parameters", {}).get("run_config") if isinstance(checkpoint, dict) else None
    if not run_config or "model" not in run_config or "state_dict" not in checkpoint:
        raise UserError(
            f"ckpt_path={path} was not written by alexnet-train (no saved run config); for a plain state_dict "
            "use model=<variant> model.weights=<file> instead."
        )
    return checkpoint


def run_config(checkpoint: dict) -> DictConfig:
    return OmegaConf.create(checkpoint["hyper_parameters"]["run_config"])


def net_from_checkpoint(checkpoint: dict) -> AlexNet:
    model_cfg = run_config(checkpoint).model
    model_cfg.weights = None  # the checkpoint carries the trained weights
    net = instantiate(model_cfg)
    net.load_state_dict(net_weights(checkpoint["state_dict"]))
    return net.eval()
