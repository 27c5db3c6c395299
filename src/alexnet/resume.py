"""Continuing a run in its own folder: ``resume=<folder>`` and ``ckpt_path=last``."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from alexnet.checkpoints import fill_former_defaults
from alexnet.errors import UserError
from alexnet.run_folder import RUN_RECORD, reroot

log = logging.getLogger(__name__)


def saved_config(folder: Path) -> DictConfig:
    """A run folder's ``config_resolved.yaml``, re-rooted to where the folder is now: every path under the folder
    the run was started in (its checkpoints, logs, W&B files) points into ``folder``, wherever it was copied or
    moved to; paths outside it (the data) are kept."""
    saved = OmegaConf.load(folder / RUN_RECORD)
    old = str(saved.paths.output_dir)
    if old != str(folder):
        log.info("The run folder moved from %s to %s: continuing in %s", old, folder, folder)
        saved = OmegaConf.create(reroot(OmegaConf.to_container(saved), old, str(folder)))
    return fill_former_defaults(saved)


def continue_run(cfg: DictConfig, typed_keys: list[str]) -> DictConfig:
    """The run's saved config, its last checkpoint, and only the ``key=value`` overrides typed now (``typed_keys``,
    e.g. ``trainer.max_epochs``) changed. A config that continues nothing is returned as it is."""
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
    resumed = saved_config(folder)
    for key in typed_keys:
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
