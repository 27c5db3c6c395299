"""Checkpoint files: sealed with a checksum of their content when written, read (``weights_only=True``) and checked
against it, their step, whether their weights fit a net, their classes.

A checkpoint is a zip of tensors stored uncompressed, and torch does not check the zip's CRCs: bytes overwritten
in the middle of a weight (a bad disk, an interrupted copy over an older file) load without complaint and evaluate
to garbage. So every checkpoint this project writes carries ``content_sha256``, a SHA-256 of everything else in it
(``seal``), and every read compares (``load_checked``). Checkpoints written before the seal existed have none and
are read as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from alexnet.config.saved import upgraded
from alexnet.errors import UserError

CHECKSUM_KEY = "content_sha256"


class DamagedCheckpoint(UserError):
    """A checkpoint whose content differs from the checksum it was written with."""


def _feed(digest: Any, value: Any) -> None:
    """Hash ``value`` (what a checkpoint holds: dicts, lists, tuples, tensors, numbers, strings) by content."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            if key != CHECKSUM_KEY:
                _feed(digest, key)
                _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, list | tuple):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def content_digest(checkpoint: dict) -> str:
    digest = hashlib.sha256()
    _feed(digest, checkpoint)
    return digest.hexdigest()


def seal(checkpoint: dict) -> None:
    """Record the checksum of the checkpoint's content in it, just before it is written."""
    checkpoint[CHECKSUM_KEY] = content_digest(checkpoint)


def is_intact(checkpoint: Any) -> bool:
    """Whether a loaded checkpoint's content matches its seal (one without a seal, from before, counts as intact)."""
    if not isinstance(checkpoint, dict) or CHECKSUM_KEY not in checkpoint:
        return isinstance(checkpoint, dict)
    return checkpoint[CHECKSUM_KEY] == content_digest(checkpoint)


def intact_checkpoints(paths: Iterable[Path]) -> list[tuple[Path, int]]:
    """(path, step) of the readable, intact Lightning checkpoints among ``paths``."""
    found = []
    for path in sorted(paths):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # unreadable: not intact
            continue
        if is_intact(checkpoint) and "global_step" in checkpoint:
            found.append((path, int(checkpoint["global_step"])))
    return found


def load_checked(path: str | Path, setting: str = "ckpt_path") -> dict:
    """A checkpoint file loaded with ``weights_only=True`` and checked against its seal; a damaged one is refused,
    naming the intact checkpoints beside it."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, pickle of foreign objects, not a torch file at all
        raise UserError(
            f"{setting}={path} is not a readable checkpoint ({type(error).__name__}: {str(error)[:300]})."
        ) from error
    if not is_intact(checkpoint):
        others = intact_checkpoints(p for p in path.parent.glob("*.ckpt") if p != path)
        beside = ", ".join(f"{p} (step {step})" for p, step in others) or "none"
        raise DamagedCheckpoint(
            f"{setting}={path} is damaged: its content does not match the checksum it was written with (a disk "
            f"or copy fault changed its bytes). Intact checkpoints beside it: {beside}."
        )
    return checkpoint


def existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt_path={path}: no such file. Checkpoints are in <run folder>/checkpoints/.")
    return path


def read_lightning_checkpoint(path: str | Path) -> tuple[Path, dict]:
    """A Lightning checkpoint (one to continue training from), read whole and checked against its seal."""
    path = existing_file(path)
    checkpoint = load_checked(path)
    try:
        int(checkpoint["global_step"])
    except Exception as error:  # not a Lightning checkpoint: no global_step
        raise UserError(f"ckpt_path={path} is not a readable Lightning checkpoint ({type(error).__name__}).") from error
    return path, checkpoint


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at."""
    return int(read_lightning_checkpoint(path)[1]["global_step"])


def check_fits(path: str | Path, module: torch.nn.Module) -> tuple[int, list[str] | None]:
    """The step of the checkpoint ``path`` that training ``module`` will start from, and the class list it
    recorded, after checking that its weights fit ``module`` name by name and shape by shape (Lightning would stop
    with a traceback)."""
    path, checkpoint = read_lightning_checkpoint(path)
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
    recorded = checkpoint.get("class_names")
    return step, list(recorded) if isinstance(recorded, list | tuple) else None


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning checkpoint written by alexnet-train, loaded with ``weights_only=True``."""
    path = existing_file(path)
    checkpoint = load_checked(path)
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
