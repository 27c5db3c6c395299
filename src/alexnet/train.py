"""``alexnet-train``: compose the config, build data, model, loggers and callbacks, fit, then test."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from alexnet.config import CONFIG_DIR
from alexnet.errors import UserError, exit_on_user_error

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list:
    """Every entry of a group that holds several objects (callbacks, loggers); an empty option gives none."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def check_launch(cfg: DictConfig) -> None:
    """Refuse combinations that would hang or duplicate work, before anything starts."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    relaunches = strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork", "notebook"))
    multi_device = cfg.trainer.get("devices") not in (1, "1", [0]) or cfg.trainer.get("num_nodes", 1) != 1
    if relaunches and multi_device and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        # Lightning's ddp re-runs the script per rank with the same argv, so each rank would start the
        # whole sweep again (Lightning #11300).
        raise UserError(
            f"trainer.strategy={strategy} on several devices cannot run inside a Hydra multirun (-m): every "
            "rank would relaunch the whole sweep. Run each configuration without -m, or use "
            "trainer.strategy=ddp_spawn for a local sweep."
        )


@dataclass
class Run:
    datamodule: L.LightningDataModule
    module: L.LightningModule
    trainer: L.Trainer
    loggers: list[Logger]


def build(cfg: DictConfig) -> Run:
    """Seed, then build data, model, loggers, callbacks and trainer from the config."""
    check_launch(cfg)
    if cfg.get("seed") is not None:  # `if cfg.seed` would ignore seed=0
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = instantiate(
        cfg.module,
        net=instantiate(cfg.model),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        # run_config holds _target_ nodes (model, trainer...) that must stay plain data, not objects.
        _recursive_=False,
        _convert_="all",
    )
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    callbacks: list[Callback] = instantiate_group(cfg.get("callbacks"))
    if not loggers:  # Lightning refuses a learning-rate monitor with nothing to log to
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return Run(datamodule, module, trainer, loggers)


def train(cfg: DictConfig) -> float | None:
    """Fit (and test) one configuration; returns ``cfg.optimized_metric`` for a sweeper."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    run = build(cfg)
    trainer = run.trainer
    try:
        trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=cfg.get("ckpt_path"))
        fit_metrics = dict(trainer.callback_metrics)
        if cfg.get("test"):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(run.module, datamodule=run.datamodule, ckpt_path=best or None)
    finally:
        # Without this the next job of a multirun logs into this job's W&B run.
        if any(isinstance(logger, WandbLogger) for logger in run.loggers):
            import wandb

            wandb.finish()
    metric = fit_metrics.get(cfg.get("optimized_metric"))
    log.info("Run folder: %s", output_dir)
    return None if metric is None else float(metric)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
