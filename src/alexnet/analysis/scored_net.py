"""A trained net and the data module it is scored on, rebuilt from a checkpoint's own saved config (not today's
defaults): what alexnet-eval, alexnet-predict and alexnet-figures work on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet.config.saved import upgraded
from alexnet.errors import UserError
from alexnet.models.alexnet import AlexNet, Ensemble, net_weights
from alexnet.models.checkpoint_files import check_classes, read_checkpoint, run_config
from alexnet.models.exported import ExportedModel, read_spec, spec_path


def restore_data_state(datamodule: object, checkpoint: dict) -> None:
    """Give a data module the state it saved in a checkpoint (the paper normalisation's mean image), as
    Lightning does when it resumes from one."""
    state = checkpoint.get(type(datamodule).__qualname__)
    if state and hasattr(datamodule, "load_state_dict"):
        datamodule.load_state_dict(state)


def net_from_checkpoint(checkpoint: dict, path: str | Path, eager: bool = False) -> AlexNet:
    """The trained net of the checkpoint read from ``path``, rebuilt from its own saved (and checked) config;
    ``eager``: without ``torch.compile`` and channels_last (what an exporter traces)."""
    model_cfg = run_config(checkpoint, path).model
    model_cfg.weights = None  # the checkpoint carries the trained weights
    if eager:
        model_cfg.compile = model_cfg.channels_last = False
    net = instantiate(model_cfg)
    net.load_state_dict(net_weights(checkpoint["state_dict"]))
    return net.eval()


def checkpoint_paths(cfg: DictConfig) -> list[str]:
    """``ckpt_path``: none, one path, or a list of paths (an ensemble)."""
    paths = cfg.get("ckpt_path")
    if paths is None:
        return []
    return [str(p) for p in paths] if isinstance(paths, ListConfig | list) else [str(paths)]


def apply_data_keys(cfg: DictConfig, data_keys: list[str], data_cfg: DictConfig) -> None:
    """Replace the saved ``data_cfg``'s values by the ``data.*`` keys typed now (``data_keys``, e.g. ``data.root``);
    a ``data=`` option typed must name the saved data module."""
    for key in (k.lstrip("+~") for k in data_keys):
        if key == "data":  # a data= option: it must be the data the net was trained on
            if cfg.data.get("_target_") != data_cfg.get("_target_"):
                chosen = str(cfg.data.get("_target_", "")).rsplit(".", 1)[-1]
                trained = str(data_cfg.get("_target_", "")).rsplit(".", 1)[-1]
                raise UserError(
                    f"data=: the checkpoint's net was trained on {trained} data, not {chosen}; its data settings "
                    "come from the checkpoint. Leave data= out, and point data.root=/path at another copy of "
                    "its data if needed."
                )
            continue
        name = key.removeprefix("data.")
        if name.split(".")[0] not in data_cfg:
            settings = ", ".join(k for k in data_cfg if not k.startswith("_"))
            raise UserError(
                f"{key}: the checkpoint's data module ({data_cfg._target_.rsplit('.', 1)[-1]}) has no such "
                f"setting. Its settings: {settings}."
            )
        OmegaConf.update(data_cfg, name, OmegaConf.select(cfg, key), force_add=True)


@dataclass
class ScoredNet:
    """What alexnet-eval and alexnet-predict score: the net (one, or an averaging ensemble), its data module, how
    many nets, and the names of its outputs in order."""

    net: torch.nn.Module
    datamodule: L.LightningDataModule
    networks: int
    class_names: list[str]
    model_cfg: DictConfig | None = None  # the settings both were built from
    data_cfg: DictConfig | None = None


def build_net_and_data(
    cfg: DictConfig, data_keys: list[str], compare_classes: bool = True, eager: bool = False
) -> ScoredNet:
    """The net(s) of ``cfg`` and the data module they are scored on.

    With checkpoints, both come from the first checkpoint's saved config (not today's defaults), and only the
    ``data.*`` keys typed now (``data_keys``, e.g. ``data.root``) replace its values; a ``data=`` option typed
    must name the checkpoint's own data module. Without checkpoints, from ``cfg``.
    The class list each checkpoint recorded must be the same for all, and (``compare_classes``) the data's.
    ``eager``: the checkpoints' nets without ``torch.compile`` and channels_last.
    """
    paths = checkpoint_paths(cfg)
    recorded = None
    if not paths:
        model_cfg, data_cfg = cfg.model, cfg.data
        nets = [instantiate(model_cfg).eval()]
    else:
        checkpoints = [read_checkpoint(p) for p in paths]
        nets = [net_from_checkpoint(c, p, eager) for c, p in zip(checkpoints, paths, strict=True)]
        recorded = checkpoints[0].get("class_names")
        for path, checkpoint in zip(paths[1:], checkpoints[1:], strict=True):
            check_classes(recorded, checkpoint.get("class_names") or recorded, f"the ensemble's {path}")
        saved = run_config(checkpoints[0], paths[0])
        model_cfg, data_cfg = saved.model, saved.data
        apply_data_keys(cfg, data_keys, data_cfg)
    data_cfg.input_size, data_cfg.channels = model_cfg.input_size, model_cfg.in_channels
    net = nets[0] if len(nets) == 1 else Ensemble(nets)
    datamodule = instantiate(data_cfg)
    if paths:
        restore_data_state(datamodule, checkpoints[0])  # the mean image the net was trained with
    if recorded is None or compare_classes:
        data_names = datamodule.class_names()
        check_classes(recorded, data_names, f"data.root={data_cfg.root}")
    names = list(recorded) if recorded is not None else data_names
    return ScoredNet(net, datamodule, len(nets), names, model_cfg, data_cfg)


class ExportedNet(torch.nn.Module):
    """An exported model (``alexnet.models.exported``) fed as the checkpoint's net is: float model input in. A graph
    with its own preprocessing gets the input's pixels back (``datamodule.picture``, uint8 RGB), as a deployer
    would give it."""

    def __init__(self, model: ExportedModel, datamodule: L.LightningDataModule, spec: dict) -> None:
        super().__init__()
        self.model, self.datamodule = model, datamodule
        self.pixels = bool(spec.get("preprocess_in_graph"))
        self.channels_last = spec["input"].get("layout") == "NHWC"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pixels:
            x = self.datamodule.picture(x)
            x = x.permute(0, 2, 3, 1).contiguous() if self.channels_last else x
        return self.model(x)


def exported_net_and_data(cfg: DictConfig, data_keys: list[str]) -> ScoredNet:
    """``model_path=<file>.onnx|.pt2``: the exported model and the data module its description records (the
    checkpoint's checked data settings, the typed ``data.*`` keys replacing them, and the saved mean image)."""
    path = Path(str(cfg.model_path)).expanduser()
    model = ExportedModel(path)  # refuses a missing, unreadable or unsafe file first
    spec = read_spec(path)
    saved = upgraded(spec["run_config"], f"{spec_path(path)} (its run_config)")
    model_cfg, data_cfg = saved.model, saved.data
    apply_data_keys(cfg, data_keys, data_cfg)
    data_cfg.input_size, data_cfg.channels = model_cfg.input_size, model_cfg.in_channels
    datamodule = instantiate(data_cfg)
    mean_file = spec["normalization"].get("mean_image")
    if mean_file:
        try:
            image = np.load(path.parent / mean_file, allow_pickle=False)  # a plain array, never a pickle
        except (OSError, ValueError) as error:
            raise UserError(f"{path.parent / mean_file}: the mean image cannot be read ({error}).") from error
        restore_data_state(datamodule, {type(datamodule).__qualname__: {"mean_image": torch.from_numpy(image)}})
    names = [str(n) for n in spec["class_names"]]
    return ScoredNet(ExportedNet(model, datamodule, spec), datamodule, 1, names, model_cfg, data_cfg)
