"""Configs read back from disk: a run folder's ``config_resolved.yaml`` and the ``run_config`` inside every
checkpoint. Such a file may come from anyone (run folders and checkpoints are shared, downloaded, copied between
clusters), and from an earlier version of this project, so in one place, before anything is built from it:

- ``check_data_only``: a saved config is data, never code. Every ``_target_`` in it, at any depth, must be a class
  this project ships (one that ``conf/`` names; ``shipped_targets``), and no value may be an interpolation
  (``${...}`` would call a resolver). Anything else is refused before anything is called: Hydra's ``instantiate``
  would otherwise call whatever a file names, with the user's rights.
- ``FORMER_TARGETS``: the ``_target_`` paths of the flat layout (before the code moved into a folder per concern),
  each with the class (or builder) it names now. A run folder or checkpoint written before the move resumes, evaluates,
  predicts and draws figures as before.
- ``fill_former_defaults``: settings added since a config was written, set to what that run did.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from alexnet.config.location import CONFIG_DIR
from alexnet.errors import UserError

FORMER_TARGETS = {
    "alexnet.model.AlexNet": "alexnet.models.pretrained.alexnet",
    # The model configs' target before the builder that loads torchvision's weights by name (same arguments).
    "alexnet.models.alexnet.AlexNet": "alexnet.models.pretrained.alexnet",
    "alexnet.lit_alexnet.LitAlexNet": "alexnet.models.lit_alexnet.LitAlexNet",
    "alexnet.paper_sgd.PaperSGD": "alexnet.optim.paper_sgd.PaperSGD",
    "alexnet.paper_plateau.PaperPlateau": "alexnet.optim.paper_plateau.PaperPlateau",
    "alexnet.faults.StopOnSignal": "alexnet.run.signals.StopOnSignal",
    "alexnet.faults.AtomicCheckpointIO": "alexnet.run.checkpoint_io.AtomicCheckpointIO",
    "alexnet.csv_logger.ResumableCSVLogger": "alexnet.run.metrics_csv.ResumableCSVLogger",
    "alexnet.throughput.ThroughputLogger": "alexnet.tracking.throughput.ThroughputLogger",
    "alexnet.wandb_media.WandbMedia": "alexnet.tracking.wandb_media.WandbMedia",
    "alexnet.benchmark.StepTimer": "alexnet.bench.training_paths.StepTimer",
    "alexnet.bench.StepTimer": "alexnet.bench.training_paths.StepTimer",  # before benchmark.py had its name
    "alexnet.run_folder.RunFolderCheck": "alexnet.run.folder.RunFolderCheck",
    "alexnet.faults.WritableOutputCheck": "alexnet.run.folder.RunFolderCheck",  # its former, smaller self
    "alexnet.data.imagenet.ImageNetDataModule": "alexnet.data.imagenet.image_folder.ImageNetDataModule",
    "alexnet.data.imagenet_prepared.PreparedImageNetDataModule": (
        "alexnet.data.imagenet.prepared_reader.PreparedImageNetDataModule"
    ),
}


def current_targets(value: Any) -> Any:
    """``value`` (a config as plain dicts and lists) with every former ``_target_`` replaced by today's."""
    if isinstance(value, dict):
        return {
            key: FORMER_TARGETS.get(item, item)
            if key == "_target_" and isinstance(item, str)
            else current_targets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [current_targets(item) for item in value]
    return value


@functools.cache
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` that a file of ``conf/`` names: the only callables a saved config may name."""
    found: set[str] = set()
    for path in CONFIG_DIR.rglob("*.yaml"):
        found.update(target for _, target in _targets(yaml.safe_load(path.read_text(encoding="utf-8"))))
    return frozenset(found)


def _targets(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key of the node, its ``_target_``) for every node of a plain config that has one."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name == "_target_":
                yield key, item
            else:
                yield from _targets(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _targets(item, f"{key}[{index}]")


def _interpolations(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _interpolations(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _interpolations(item, f"{key}[{index}]")
    elif isinstance(value, str) and "${" in value:
        yield key


def check_data_only(saved: dict, where: str) -> None:
    """Refuse a saved config (plain dicts and lists, targets already brought up to date) that names a callable
    this project does not ship, or holds an interpolation; ``where`` names the file for the message."""
    allowed = shipped_targets()
    for key, target in _targets(saved):
        if not isinstance(target, str) or target not in allowed:
            raise UserError(
                f"{where}: {key}._target_={target} is not a class this project ships. A saved config is data, never "
                "code, so nothing is built from it; use a run folder or checkpoint written by alexnet-train, or "
                "restore the file."
            )
    for key in _interpolations(saved):
        raise UserError(
            f"{where}: {key} holds an interpolation (${{...}}), which a config written by alexnet-train never does "
            "(it saves every value resolved); nothing is built from it. Restore the file."
        )


def fill_former_defaults(cfg: DictConfig) -> DictConfig:
    """A saved run config with the settings added since it was written set to what that run did: a run
    saved before ``model.lrn_across_towers`` existed normalised across the towers. (``data.normalization``
    needs nothing: its default, ``per_channel``, is what every earlier run did.)"""
    model = cfg.get("model")
    if model is not None and "lrn" in model and "lrn_across_towers" not in model:
        with open_dict(model):
            model.lrn_across_towers = True
    return cfg


def upgraded(saved: dict | DictConfig | ListConfig, where: str) -> DictConfig:
    """A saved config as today's code reads it, checked to be data only (``check_data_only``; ``where`` names
    the file in the message): today's targets, settings added since filled in."""
    plain = OmegaConf.to_container(saved) if isinstance(saved, DictConfig | ListConfig) else saved
    if not isinstance(plain, dict):
        raise UserError(f"{where}: not a config written by alexnet-train (a mapping of settings).")
    current = current_targets(plain)
    check_data_only(current, where)
    return fill_former_defaults(OmegaConf.create(current))
