"""A training run, from its config to its tested weights: build the data, model, loggers, callbacks and trainer,
check that the run can start, fit, then test. ``alexnet-train`` calls ``train``; ``alexnet-bench`` and the
tests call ``build``."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.checkpoints import check_fits
from alexnet.config import Invocation
from alexnet.config_rules import check_settings
from alexnet.csv_logger import ResumableCSVLogger
from alexnet.errors import LaunchError, UserError
from alexnet.faults import ending_as_exit_codes, probe_writable
from alexnet.resume import continue_run
from alexnet.run_folder import RUN_RECORD, claiming
from alexnet.wandb_run import finishing_wandb, name_wandb_runs

log = logging.getLogger(__name__)


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


def git_commit() -> str | None:
    """The commit of the code being run (its source checkout, else the working folder), for the record."""
    for folder in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            found = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
            )
            return found.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
    return None


def first_rank_of_node() -> bool:
    # Lightning's ddp re-runs this entry point for the other ranks with LOCAL_RANK set.
    return os.environ.get("LOCAL_RANK", "0") == "0"


def describe_run(cfg: DictConfig, invocation: Invocation) -> None:
    """Complete the config with what identifies the run: the git commit, and the W&B run's id, name and group."""
    with open_dict(cfg):
        cfg.git_commit = cfg.get("git_commit") or git_commit()
    name_wandb_runs(cfg.get("logger"), invocation.job_name, invocation.run_group)


def save_config(cfg: DictConfig) -> None:
    """The run's resolved config, in its folder: what ``resume=`` and ``alexnet-eval`` rebuild it from."""
    if first_rank_of_node():
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / RUN_RECORD, resolve=True)


def preflight(cfg: DictConfig, run: Run) -> None:
    """Fail now, not at the first checkpoint hours later: a folder that cannot be written or is nearly full, a
    checkpoint that does not fit the net. Point a resumed CSV log at the checkpoint's step."""
    output_dir = Path(cfg.paths.output_dir)
    try:
        probe_writable(output_dir)
    except OSError as error:
        raise UserError(
            f"Cannot write to the run folder {output_dir} ({error.strerror or error}). Point runs at a writable "
            "folder: paths.log_dir=/path (or ALEXNET_LOG_DIR=/path)."
        ) from error
    # weights + SGD momentum in fp32, for last.ckpt, the best checkpoint and one being written
    checkpoint_bytes = 2 * 4 * sum(p.numel() for p in run.module.parameters())
    free = shutil.disk_usage(output_dir).free
    if free < 3 * checkpoint_bytes:
        raise UserError(
            f"Only {free / 2**30:.2f} GiB free in {output_dir}; this net's checkpoints take about "
            f"{checkpoint_bytes / 2**30:.2f} GiB each and a run keeps up to three. Free some space or point runs "
            "elsewhere: paths.log_dir=/path."
        )
    if cfg.get("ckpt_path"):
        if not isinstance(cfg.ckpt_path, str):
            raise UserError(f"ckpt_path={cfg.ckpt_path}: alexnet-train starts from one checkpoint, not a list.")
        step = check_fits(cfg.ckpt_path, run.module)
        for logger in run.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.resume_step = step


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best-by-metric checkpoint saved in this run, if any."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor and callback.best_model_path:
            return callback.best_model_path
    return None


def train(cfg: DictConfig, invocation: Invocation | None = None) -> float | None:
    """Fit (and test) one configuration; returns ``cfg.optimized_metric`` for a sweeper.

    Everything is checked (the run folder, the settings, the net against the checkpoint, the disk) before the
    run's config is written, under the run folder's lock."""
    invocation = invocation or Invocation()
    output_dir = Path(cfg.paths.output_dir)
    with claiming(output_dir, cfg.get("resume"), cfg.get("ckpt_path")):
        cfg = continue_run(cfg, invocation.typed_keys())
        check_settings(cfg)  # the resumed config too: the saved values with the ones typed now
        describe_run(cfg, invocation)
        run = build(cfg, invocation.multirun)
        preflight(cfg, run)
        save_config(cfg)
        trainer = run.trainer
        with ending_as_exit_codes(trainer, output_dir), finishing_wandb(run.loggers):
            trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
            fit_metrics = dict(trainer.callback_metrics)
            if cfg.get("test"):
                # test_weights=best: the best checkpoint; last: the final weights (ckpt_path None)
                weights = best_checkpoint(trainer) if cfg.get("test_weights", "best") == "best" else None
                trainer.test(run.module, datamodule=run.datamodule, ckpt_path=weights, weights_only=True)
    metric = fit_metrics.get(cfg.get("optimized_metric"))
    log.info("Run folder: %s", output_dir)
    return None if metric is None else float(metric)
