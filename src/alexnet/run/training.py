"""A training run, from its config to its tested weights: claim its folder, continue it or start it, check
that it can start, save its config, fit, then test. ``alexnet-train`` calls ``train``."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.config.invocation import Invocation
from alexnet.config.rules import check_settings
from alexnet.errors import UserError
from alexnet.models.checkpoint_files import check_fits
from alexnet.run.build import Run, build
from alexnet.run.folder import RUN_RECORD, claiming, probe_writable
from alexnet.run.metrics_csv import ResumableCSVLogger
from alexnet.run.resume import continue_run
from alexnet.run.signals import ending_as_exit_codes
from alexnet.run.wandb_run import finishing_wandb, name_wandb_runs

log = logging.getLogger(__name__)


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
    seed = invocation.seed if invocation.multirun else None  # tag the runs of a multi-seed sweep
    name_wandb_runs(cfg.get("logger"), invocation.job_name, invocation.run_group, seed)


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
