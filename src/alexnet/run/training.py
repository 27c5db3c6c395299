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
from alexnet.models.checkpoint_files import check_classes, check_fits
from alexnet.run.build import Run, build
from alexnet.run.folder import (
    AUTO,
    RUN_RECORD,
    claiming,
    continues_run,
    launching_process,
    probe_writable,
    resolve_auto,
    run_log,
    write_invocation,
)
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


# last.ckpt, its successor written aside (and that file's own temporary copy), the best checkpoint and its successor.
CHECKPOINTS_AT_ONCE = 4


def checkpoint_size(module: L.LightningModule, cfg: DictConfig) -> int:
    """Bytes of one checkpoint of ``module``: its state (weights and buffers) and the optimizer's per-parameter
    state (SGD and the paper's update keep one momentum or velocity tensor per weight; none without momentum), plus
    the data module's mean image and a margin for the rest (hyper-parameters, loop and RNG states)."""
    state = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    momentum = OmegaConf.select(cfg, "optimizer.momentum", default=0.9)
    return state + (params if momentum else 0) + 4 * 3 * 256 * 256 + (1 << 20)


def output_folders(run: Run) -> list[tuple[str, Path]]:
    """(setting, folder) of every folder the run's callbacks and loggers write into."""
    found = [
        (f"callbacks.{type(c).__name__}.dirpath", Path(c.dirpath))
        for c in run.trainer.callbacks
        if isinstance(getattr(c, "dirpath", None), str | Path)
    ]
    found += [(f"logger.{type(lg).__name__}.save_dir", Path(lg.save_dir)) for lg in run.loggers if lg.save_dir]
    return found


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
    for setting, folder in output_folders(run):
        try:
            probe_writable(folder)  # made now: a checkpoint folder that vanishes later was removed mid-run
        except OSError as error:
            raise UserError(
                f"{setting}={folder} cannot be written ({error.strerror or error}); the run would fail at its first "
                "checkpoint. Give a writable folder (or leave it at its default, inside the run folder)."
            ) from error
    checkpoint_bytes = checkpoint_size(run.module, cfg)
    free = shutil.disk_usage(output_dir).free
    if free < CHECKPOINTS_AT_ONCE * checkpoint_bytes:
        raise UserError(
            f"Only {free / 2**30:.2f} GiB free in {output_dir}; this net's checkpoints take about "
            f"{checkpoint_bytes / 2**30:.2f} GiB each and a run holds up to {CHECKPOINTS_AT_ONCE} at once while it "
            "writes one. Free some space or point runs elsewhere: paths.log_dir=/path."
        )
    if cfg.get("ckpt_path"):
        if not isinstance(cfg.ckpt_path, str):
            raise UserError(f"ckpt_path={cfg.ckpt_path}: alexnet-train starts from one checkpoint, not a list.")
        step, recorded = check_fits(cfg.ckpt_path, run.module)
        # Label i must mean the class it meant in training: the same count of classes under other names, or in
        # another order, would go on silently with every label shifted.
        check_classes(recorded, run.datamodule.class_names(), f"data.root={cfg.data.get('root')}")
        for logger in run.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.resume_step = step


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best-by-metric checkpoint saved in this run, if any."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) and callback.best_model_path:
            return callback.best_model_path
    return None


def train(cfg: DictConfig, invocation: Invocation | None = None) -> float | None:
    """Fit (and test) one configuration; returns ``cfg.optimized_metric`` for a sweeper.

    Everything is checked (the run folder, the settings, the net against the checkpoint, the disk) before the
    run's config is written, under the run folder's lock."""
    invocation = invocation or Invocation()
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("resume") == AUTO:
        with open_dict(cfg):
            cfg.resume = resolve_auto(cfg.resume, output_dir)
    resumed = continues_run(cfg.get("resume"), cfg.get("ckpt_path"))
    composed = OmegaConf.to_yaml(cfg)  # as Hydra composed it, for the .hydra/ record
    with claiming(output_dir, cfg.get("resume"), cfg.get("ckpt_path"), lock=cfg.get("lock", True)) as claim:
        cfg = continue_run(cfg, invocation.typed_keys())
        check_settings(cfg)  # the resumed config too: the saved values with the ones typed now
        describe_run(cfg, invocation)
        run = build(cfg, invocation.multirun)
        preflight(cfg, run)
        # Every check has passed: only now is anything written into the run folder.
        claim.begin()
        if launching_process():
            write_invocation(output_dir, resumed, composed, invocation.hydra_node, list(invocation.overrides))
        save_config(cfg)
        trainer = run.trainer
        with (
            run_log(output_dir, invocation.log_name),
            ending_as_exit_codes(trainer, output_dir),
            finishing_wandb(run.loggers),
        ):
            trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
            fit_metrics = dict(trainer.callback_metrics)
            if cfg.get("test"):
                # test_weights=best: the best checkpoint; last: the final weights (ckpt_path None)
                weights = best_checkpoint(trainer) if cfg.get("test_weights", "best") == "best" else None
                trainer.test(run.module, datamodule=run.datamodule, ckpt_path=weights, weights_only=True)
    metric = fit_metrics.get(cfg.get("optimized_metric"))
    log.info("Run folder: %s", output_dir)
    return None if metric is None else float(metric)
