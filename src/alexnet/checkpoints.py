"""Rebuild a trained net from a checkpoint's own saved config (not today's defaults), safely."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from alexnet.errors import UserError
from alexnet.model import AlexNet, Ensemble, net_weights


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


def fill_former_defaults(cfg: DictConfig) -> DictConfig:
    """A saved run config with the settings added since it was written set to what that run did: a run
    saved before ``model.lrn_across_towers`` existed normalised across the towers. (``data.normalization``
    needs nothing: its default, ``per_channel``, is what every earlier run did.)"""
    model = cfg.get("model")
    if model is not None and "lrn" in model and "lrn_across_towers" not in model:
        with open_dict(model):
            model.lrn_across_towers = True
    return cfg


def run_config(checkpoint: dict) -> DictConfig:
    return fill_former_defaults(OmegaConf.create(checkpoint["hyper_parameters"]["run_config"]))


def restore_data_state(datamodule: object, checkpoint: dict) -> None:
    """Give a data module the state it saved in a checkpoint (the paper normalisation's mean image), as
    Lightning does when it resumes from one."""
    state = checkpoint.get(type(datamodule).__qualname__)
    if state and hasattr(datamodule, "load_state_dict"):
        datamodule.load_state_dict(state)


def net_from_checkpoint(checkpoint: dict) -> AlexNet:
    model_cfg = run_config(checkpoint).model
    model_cfg.weights = None  # the checkpoint carries the trained weights
    net = instantiate(model_cfg)
    net.load_state_dict(net_weights(checkpoint["state_dict"]))
    return net.eval()


def checkpoint_paths(cfg: DictConfig) -> list[str]:
    """``ckpt_path``: none, one path, or a list of paths (an ensemble)."""
    paths = cfg.get("ckpt_path")
    if paths is None:
        return []
    return [str(p) for p in paths] if isinstance(paths, ListConfig | list) else [str(paths)]


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


@dataclass
class ScoredNet:
    """What alexnet-eval and alexnet-predict score: the net (one, or an averaging ensemble), its data module, how
    many nets, and the names of its outputs in order."""

    net: torch.nn.Module
    datamodule: L.LightningDataModule
    networks: int
    class_names: list[str]


def build_net_and_data(cfg: DictConfig, data_keys: list[str], compare_classes: bool = True) -> ScoredNet:
    """The net(s) of ``cfg`` and the data module they are scored on.

    With checkpoints, both come from the first checkpoint's saved config (not today's defaults), and only the
    ``data.*`` keys typed now (``data_keys``, e.g. ``data.root``) replace its values. Without, from ``cfg``.
    The class list each checkpoint recorded must be the same for all, and (``compare_classes``) the data's.
    """
    paths = checkpoint_paths(cfg)
    recorded = None
    if not paths:
        model_cfg, data_cfg = cfg.model, cfg.data
        nets = [instantiate(model_cfg).eval()]
    else:
        checkpoints = [read_checkpoint(p) for p in paths]
        nets = [net_from_checkpoint(c) for c in checkpoints]
        recorded = checkpoints[0].get("class_names")
        for path, checkpoint in zip(paths[1:], checkpoints[1:], strict=True):
            check_classes(recorded, checkpoint.get("class_names") or recorded, f"the ensemble's {path}")
        saved = run_config(checkpoints[0])
        model_cfg, data_cfg = saved.model, saved.data
        for key in (k.lstrip("+~") for k in data_keys):
            name = key.removeprefix("data.")
            if name.split(".")[0] not in data_cfg:
                settings = ", ".join(k for k in data_cfg if not k.startswith("_"))
                raise UserError(
                    f"{key}: the checkpoint's data module ({data_cfg._target_.rsplit('.', 1)[-1]}) has no such "
                    f"setting. Its settings: {settings}."
                )
            OmegaConf.update(data_cfg, name, OmegaConf.select(cfg, key), force_add=True)
    data_cfg.input_size, data_cfg.channels = model_cfg.input_size, model_cfg.in_channels
    net = nets[0] if len(nets) == 1 else Ensemble(nets)
    datamodule = instantiate(data_cfg)
    if paths:
        restore_data_state(datamodule, checkpoints[0])  # the mean image the net was trained with
    if recorded is None or compare_classes:
        data_names = datamodule.class_names()
        check_classes(recorded, data_names, f"data.root={data_cfg.root}")
    return ScoredNet(net, datamodule, len(nets), list(recorded) if recorded is not None else data_names)
