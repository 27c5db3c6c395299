"""``alexnet-train``: compose the config, build data, model, loggers and callbacks, fit, then test."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.checkpoints import checkpoint_step
from alexnet.config import CONFIG_DIR, typed_overrides
from alexnet.csv_logger import ResumableCSVLogger
from alexnet.errors import LaunchError, UserError, exit_on_user_error, in_multirun
from alexnet.faults import STOP_SIGNALS, StopOnSignal, probe_writable

log = logging.getLogger(__name__)
# What gloo and NCCL say when a peer process has gone away mid-collective.
PEER_FAILURES = (
    "gloo/transport",  # every gloo socket error names its transport source file
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
)
STOP_SIGNALS_BY_NAME = {name: int(signum) for signum, name in STOP_SIGNALS.items()}


def instantiate_group(group: DictConfig | None) -> list:
    """Every entry of a group that holds several objects (callbacks, loggers); an empty option gives none."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


def check_launch(cfg: DictConfig) -> None:
    """Refuse combinations that would hang or duplicate work, before anything starts."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    relaunches = strategy.startswith("ddp") and not any(s in strategy for s in ("spawn", "fork", "notebook"))
    multi_device = cfg.trainer.get("devices") not in (1, "1", [0]) or cfg.trainer.get("num_nodes", 1) != 1
    # Under SLURM (submitit) or torchrun the ranks already exist; Lightning relaunches nothing.
    external_ranks = SLURMEnvironment.detect() or TorchElasticEnvironment.detect()
    if relaunches and multi_device and in_multirun() and not external_ranks:
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


def continue_run(cfg: DictConfig) -> DictConfig:
    """``resume=<folder>`` / ``ckpt_path=last``: the run's saved config, its last checkpoint, and only the
    ``key=value`` overrides typed now (e.g. ``trainer.max_epochs=120``) changed."""
    if not cfg.get("resume") and cfg.get("ckpt_path") != "last":
        return cfg
    folder = Path(cfg.paths.output_dir)  # hydra.run.dir already points at the run being continued
    saved, last = folder / "config_resolved.yaml", folder / "checkpoints" / "last.ckpt"
    if not saved.is_file():
        where = f"resume={cfg.resume}" if cfg.get("resume") else f"ckpt_path=last (newest run under {folder.parent})"
        raise UserError(
            f"{where}: no run to continue ({saved} is missing). Give resume=<run folder> of a run alexnet-train "
            "started, e.g. resume=outputs/runs/2026-01-31_12-00-00-000000."
        )
    if not last.is_file():
        raise UserError(
            f"{folder} has no checkpoints/last.ckpt: the run stopped before its first checkpoint. Start it again."
        )
    resumed = OmegaConf.load(saved)
    for key in typed_overrides():
        name = key.lstrip("+~")
        if name in ("resume", "ckpt_path") or name.startswith("hydra."):
            continue
        if "." not in name or key.startswith("~"):
            raise UserError(
                f"{key}: a resumed run keeps its configuration; only values may change (e.g. trainer.max_epochs=120), "
                "not config groups or deletions."
            )
        OmegaConf.update(resumed, name, OmegaConf.select(cfg, name), force_add=True)
    resumed.ckpt_path, resumed.resume = str(last), str(folder)
    log.info("Continuing %s from %s", folder, last)
    return resumed


def first_rank_of_node() -> bool:
    # Lightning's ddp re-runs this entry point for the other ranks with LOCAL_RANK set.
    return os.environ.get("LOCAL_RANK", "0") == "0"


def job_name() -> str | None:
    """The overrides that make this job differ (``model.groups=1,model.lrn=false``), without paths."""
    if not HydraConfig.initialized():
        return None
    skip = ("paths.", "data.root", "hydra.", "resume", "ckpt_path", "logger", "callbacks")
    chosen = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith(skip)]
    return ",".join(sorted(chosen)) or None


def run_group() -> str | None:
    """W&B group: the sweep's folder name under -m, else the experiment's name."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return f"sweep-{Path(hydra_cfg.sweep.dir).name}"
    return hydra_cfg.runtime.choices.get("experiment")


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


def describe_run(cfg: DictConfig) -> None:
    """Record the git commit, and give a W&B logger its id, name and group before the config is saved: the
    saved id is what lets resume=<run folder> reopen the same W&B run."""
    with open_dict(cfg):
        cfg.git_commit = cfg.get("git_commit") or git_commit()
    for entry in (cfg.get("logger") or {}).values():
        if entry is None or not str(entry.get("_target_", "")).endswith("WandbLogger"):
            continue
        with open_dict(entry):
            entry.id = entry.get("id") or "".join(
                secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)
            )
            entry.name = entry.get("name") or job_name()
            entry.group = entry.get("group") or run_group()


def check_output_dir(output_dir: Path, module: L.LightningModule) -> None:
    """Fail now, not at the first checkpoint hours later, when the run folder cannot hold checkpoints."""
    try:
        probe_writable(output_dir)
    except OSError as error:
        raise UserError(
            f"Cannot write to the run folder {output_dir} ({error.strerror or error}). Point runs at a writable "
            "folder: paths.log_dir=/path (or ALEXNET_LOG_DIR=/path)."
        ) from error
    # weights + SGD momentum in fp32, for last.ckpt, the best checkpoint and one being written
    checkpoint_bytes = 2 * 4 * sum(p.numel() for p in module.parameters())
    free = shutil.disk_usage(output_dir).free
    if free < 3 * checkpoint_bytes:
        raise UserError(
            f"Only {free / 2**30:.2f} GiB free in {output_dir}; this net's checkpoints take about "
            f"{checkpoint_bytes / 2**30:.2f} GiB each and a run keeps up to three. Free some space or point runs "
            "elsewhere: paths.log_dir=/path."
        )


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best-by-metric checkpoint saved in this run, if any."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor and callback.best_model_path:
            return callback.best_model_path
    return None


def train(cfg: DictConfig) -> float | None:
    """Fit (and test) one configuration; returns ``cfg.optimized_metric`` for a sweeper."""
    cfg = continue_run(cfg)
    output_dir = Path(cfg.paths.output_dir)
    describe_run(cfg)
    if first_rank_of_node():
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)
    run = build(cfg)
    check_output_dir(output_dir, run.module)
    trainer = run.trainer
    if cfg.get("ckpt_path"):
        step = checkpoint_step(cfg.ckpt_path)
        for logger in run.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.resume_step = step
    stopper = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)
    finished = False
    try:
        trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        fit_metrics = dict(trainer.callback_metrics)
        if cfg.get("test"):
            trainer.test(run.module, datamodule=run.datamodule, ckpt_path=best_checkpoint(trainer), weights_only=True)
        finished = True
    except SIGTERMException:
        signal_name = stopper.received if stopper and stopper.received else "SIGTERM"
        saved = stopper.saved if stopper else None
        log.warning(
            "Stopped by %s at step %d. %s Continue with: alexnet-train resume=%s",
            signal_name,
            trainer.global_step,
            f"Checkpoint: {saved}." if saved else "No checkpoint was saved (callbacks.stop_on_signal is off).",
            output_dir,
        )
        raise SystemExit(128 + STOP_SIGNALS_BY_NAME.get(signal_name, signal.SIGTERM)) from None
    except RuntimeError as error:
        if trainer.world_size > 1 and any(s in str(error) for s in PEER_FAILURES):
            first_line = str(error).strip().splitlines()[0][:300]
            raise UserError(
                f"Another DDP rank stopped, so this one stops too ({first_line}). Look at the failed rank's log, "
                f"then continue from the last checkpoint: alexnet-train resume={output_dir}"
            ) from error
        raise
    finally:
        # Without this the next job of a multirun logs into this job's W&B run.
        if any(isinstance(logger, WandbLogger) for logger in run.loggers):
            import wandb

            wandb.finish(exit_code=0 if finished else 1)  # a failed job shows as failed in W&B
    metric = fit_metrics.get(cfg.get("optimized_metric"))
    log.info("Run folder: %s", output_dir)
    return None if metric is None else float(metric)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    return train(cfg)


if __name__ == "__main__":
    main()
