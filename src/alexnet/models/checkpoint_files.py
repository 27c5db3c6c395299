"""Checkpoint files: read (``weights_only=True``), their step, whether their weights fit a net, their classes."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from alexnet.config.saved import upgraded
from alexnet.errors import UserError


def existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt_path={path}: no such file. Checkpoints are in <run folder>/checkpoints/.")
    return path


def _resume_checkpoint(path: str | Path) -> tuple[Path, dict]:
    """A Lightning checkpoint, memory-mapped (its weights are not read: the Trainer loads it in full afterwards)."""
    path = existing_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        int(checkpoint["global_step"])
    except Exception as error:  # truncated zip, not a torch file, no global_step
        raise UserError(f"ckpt_path={path} is not a readable Lightning checkpoint ({type(error).__name__}).") from error
    return path, checkpoint


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at."""
    return int(_resume_checkpoint(path)[1]["global_step"])


def check_fits(path: str | Path, module: torch.nn.Module) -> int:
    """The step of the checkpoint ``path`` that training ``module`` will start from, after checking that its
    weights fit ``module`` name by name and shape by shape (Lightning would stop with a traceback)."""
    path, checkpoint = _resume_checkpoint(path)
    step, saved = int(checkpoint["global_step"]), checkpoint.get("state_dict")
    if not isinstance(saved, dict):
        raise UserError(f"ckpt_path={path} is not a readable Lightning checkpoint (KeyError).")
    ours = module.state_dict()
    differences = [
        f"{key} is {list(saved[key].shape)} there and {list(value.shape)} here"
        for key, value in ours.items()
        if key in saved and saved[key].shape != value.shape
    ]
    differences += [f"{key} is missing there" for key in ours if key not in saved]
    differences += [f"{key} is not in this net" for key in saved if key not in ours]
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise UserError(
            f"ckpt_path={path} holds another net than these model settings: {differences[0]}{more}. Use the model "
            "settings it was trained with (they are in its run's config_resolved.yaml)."
        )
    return step


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


def run_config(checkpoint: dict, path: str | Path) -> DictConfig:
    """The run config the checkpoint at ``path`` saved, checked and brought up to date (``alexnet.config.saved``)."""
    return upgraded(checkpoint["hyper_parameters"]["run_config"], f"{path} (its saved run config)")


def check_classes(recorded: list[str] | None, data_names: list[str], where: str) -> None:
    """Refuse data whose classes are not those a checkpoint was trained on (same count, other classes included):
    its error rate, or its predictions' names, would be silently wrong."""
    if recorded is None or list(recorded) == list(data_names):
        return
    missing = [n for n in recorded if n not in data_names]
    new = [n for n in data_names if n not in recorded]
    detail = (
        f"{len(recorded)} classes in the checkpoint, {len(data_names)} in the data"
        if len(recorded) != len(data_names)
        else f"{len(recorded)} classes in both"
    )
    if missing or new:
        detail += f"; not in the data: {', '.join(missing[:3]) or 'none'}"
        detail += f"; not in the checkpoint: {', '.join(new[:3]) or 'none'}"
    else:
        detail += "; in another order"
    raise UserError(
        f"The checkpoint was trained on other classes than {where} holds ({detail}). Use data with the "
        "checkpoint's class folders."
    )
