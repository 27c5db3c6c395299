"""Configs read back from disk: a run folder's ``config_resolved.yaml`` and the ``run_config`` inside every
checkpoint. They were written by this project, maybe by an earlier version of it, so they are brought up to date
in one place before anything is built from them:

- ``FORMER_TARGETS``: the ``_target_`` paths of the flat layout (before the code moved into a folder per concern),
  each with the class it names now. A run folder or checkpoint written before the move resumes, evaluates,
  predicts and draws figures as before.
- ``fill_former_defaults``: settings added since a config was written, set to what that run did.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

FORMER_TARGETS = {
    "alexnet.model.AlexNet": "alexnet.models.alexnet.AlexNet",
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


def fill_former_defaults(cfg: DictConfig) -> DictConfig:
    """A saved run config with the settings added since it was written set to what that run did: a run
    saved before ``model.lrn_across_towers`` existed normalised across the towers. (``data.normalization``
    needs nothing: its default, ``per_channel``, is what every earlier run did.)"""
    model = cfg.get("model")
    if model is not None and "lrn" in model and "lrn_across_towers" not in model:
        with open_dict(model):
            model.lrn_across_towers = True
    return cfg


def upgraded(saved: dict | DictConfig | ListConfig) -> DictConfig:
    """A saved config as today's code reads it: today's targets, settings added since filled in."""
    plain = OmegaConf.to_container(saved) if isinstance(saved, DictConfig | ListConfig) else saved
    return fill_former_defaults(OmegaConf.create(current_targets(plain)))
