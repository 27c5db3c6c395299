"""A training run's objects, built from its config: data, model, loggers, callbacks and trainer."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from omegaconf import DictConfig, OmegaConf

from alexnet.errors import LaunchError
from alexnet.run.checkpoint_state import CheckpointState
from alexnet.run.resume_point import ResumePoint


def instantiate_group(group: DictConfig | None) -> list:
    """Every entry of a group that holds several objects (callbacks, loggers); an empty option gives none."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def check_launch(cfg: DictConfig, multirun: bool) -> None:
    """Refuse combinations that would hang or duplicate work, before anything starts."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    relaunches = strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork", "notebook"))
    multi_device = cfg.trainer.get("devices") not in (1, "1", [0]) or cfg.trainer.get("num_nodes", 1) != 1
    # Under SLURM (submitit) or torchrun the ranks already exist; Lightning relaunches nothing.
    external_ranks = SLURMEnvironment.detect() or TorchElasticEnvironment.detect()
    if relaunches and multi_device and multirun and not external_ranks:
        # Lightning's ddp re-runs the script per rank with the same argv, so each rank would start the
        # whole sweep again (Lightning #11300).
        raise LaunchError(
            f"trainer.strategy={strategy} on several devices cannot run inside a local Hydra multirun (-m): every "
            "rank would relaunch the whole sweep. Run each configuration without -m, sweep on SLURM with "
            "hydra/launcher=slurm_multi_gpu (SLURM starts one task per GPU), or use trainer.strategy=ddp_spawn."
        )


@dataclass
class Run:
    datamodule: L.LightningDataModule
    module: L.LightningModule
    trainer: L.Trainer
    loggers: list[Logger]


def build(cfg: DictConfig, multirun: bool = False) -> Run:
    """Seed, then build data, model, loggers, callbacks and trainer from the config."""
    check_launch(cfg, multirun)
    if cfg.get("seed") is not None:  # `if cfg.seed` would ignore seed=0
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    # A run continued from a checkpoint takes its weights from it: model.weights is not read (nor downloaded) again.
    from_checkpoint = bool(cfg.get("resume") or cfg.get("ckpt_path"))
    net = instantiate(cfg.model, **({"weights": None} if from_checkpoint and "weights" in cfg.model else {}))
    module = instantiate(
        cfg.module,
        net=net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        run_config=resolved,
        # run_config holds _target_ nodes (model, trainer...) that must stay plain data, not objects.
        _recursive_=False,
        _convert_="all",
    )
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    callbacks: list[Callback] = instantiate_group(cfg.get("callbacks"))
    callbacks.append(CheckpointState(resolved))  # exact resume, in every run
    # The resume point last of all (Lightning moves checkpoint callbacks to the end, keeping their order): what it
    # saves includes the best checkpoint's score of the same epoch.
    callbacks.sort(key=lambda callback: isinstance(callback, ResumePoint))
    if not loggers:  # Lightning refuses a learning-rate monitor with nothing to log to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return Run(datamodule, module, trainer, loggers)
