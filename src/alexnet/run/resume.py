"""Continuing a run in its own folder: ``resume=<folder>`` and ``ckpt_path=last``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alexnet.config.saved import upgraded
from alexnet.errors import UserError
from alexnet.models.checkpoint_files import DamagedCheckpoint, intact_checkpoints, read_lightning_checkpoint
from alexnet.run.folder import CHECKPOINTS, LAST, RUN_RECORD, continues_run, reroot

log = logging.getLogger(__name__)

# model.* settings that change how the net runs, not what it is: the only ones a resumed run may change.
RUNTIME_MODEL_KEYS = ("model.compile", "model.channels_last")
# Settings that decide which samples each rank's next batches hold: fixed until the epoch a run stopped in is over.
MID_EPOCH_KEYS = ("data.batch_size", "trainer.devices", "trainer.num_nodes", "data.num_workers")
_ABSENT = object()


# Settings that say where a run writes: in a saved config they must lie inside the run's own folder.
OUTPUT_KEYS = ("output_dir", "dirpath", "save_dir", "default_root_dir", "run_dir")


def _outputs(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        found = []
        for name, item in value.items():
            where = f"{key}.{name}" if key else str(name)
            if name in OUTPUT_KEYS and isinstance(item, str):
                found.append((where, item))
            else:
                found += _outputs(item, where)
        return found
    if isinstance(value, list):
        return [pair for index, item in enumerate(value) for pair in _outputs(item, f"{key}[{index}]")]
    return []


def saved_config(folder: Path) -> DictConfig:
    """A run folder's ``config_resolved.yaml``, checked to be data only (``alexnet.config.saved``) and re-rooted
    to where the folder is now: every path under the folder the run was started in (its checkpoints, logs, W&B
    files) points into ``folder``, wherever it was copied or moved to; paths outside it (the data) are kept. A
    place to write outside the folder is refused: a resumed run writes into its own folder only."""
    path = folder / RUN_RECORD
    try:
        # Nothing of it is resolved or accessed as a config before upgraded() has checked it.
        plain = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as error:  # unreadable, not UTF-8, not YAML
        raise UserError(
            f"{path} cannot be read ({type(error).__name__}: {str(error).splitlines()[0][:200]}); the run's config "
            f"is damaged. Restore it (each checkpoint holds a copy, under hyper_parameters.run_config) or start again."
        ) from error
    if not isinstance(plain, dict) or not isinstance(plain.get("paths"), dict) or "model" not in plain:
        raise UserError(f"{path} is not a config written by alexnet-train; the run's config is damaged.")
    checked = OmegaConf.to_container(upgraded(plain, str(path)))
    old = str(checked["paths"].get("output_dir"))
    if old != str(folder):
        log.info("The run folder moved from %s to %s: continuing in %s", old, folder, folder)
        checked = reroot(checked, old, str(folder))
    for key, place in _outputs(checked):
        if place != str(folder) and not Path(place).is_relative_to(folder):
            raise UserError(
                f"{path}: {key}={place} lies outside the run folder, and a resumed run writes only into its own "
                "folder. Restore the file, or start a new run."
            )
    return OmegaConf.create(checked)


def resume_point(folder: Path) -> tuple[Path, dict]:
    """``checkpoints/last.ckpt``, readable and intact, and where in training it was saved (its ``position``, empty
    for checkpoints written before it was recorded); a damaged one names the run's intact checkpoints instead."""
    last = folder / CHECKPOINTS / LAST
    if not last.is_file():
        raise UserError(
            f"{folder} has no checkpoints/last.ckpt: the run stopped before its first checkpoint. Start it again."
        )
    try:
        checkpoint = read_lightning_checkpoint(last)[1]
    except UserError as error:
        intact = intact_checkpoints(p for p in last.parent.glob("*.ckpt") if p != last)
        damaged = isinstance(error, DamagedCheckpoint)
        what = "its content does not match its checksum" if damaged else "not a readable checkpoint"
        if not intact:
            raise UserError(
                f"{last} is damaged ({what}) and the run has no other intact checkpoint; start again."
            ) from None
        listed = ", ".join(f"{p} (step {step})" for p, step in intact)
        raise UserError(
            f"{last} is damaged ({what}). Intact checkpoints of this run: {listed}. Continue from one of them: "
            f"cp {intact[-1][0]} {last}, then alexnet-train resume={folder}"
        ) from None
    position = checkpoint.get("position")
    return last, {**(position if isinstance(position, dict) else {}), "step": int(checkpoint["global_step"])}


def is_config_group(cfg: DictConfig, name: str) -> bool:
    """Whether a top-level key is a config group (``model=paper``, ``experiment=...``): a node of settings, or an
    option that places its settings elsewhere (``experiment``, ``debug``), rather than a value (``seed``, ``test``)."""
    return name not in cfg or isinstance(cfg.get(name), DictConfig)


def continue_run(cfg: DictConfig, typed_keys: list[str]) -> DictConfig:
    """The run's saved config, its last checkpoint, and only the ``key=value`` overrides typed now (``typed_keys``,
    e.g. ``trainer.max_epochs``) changed. A config that continues nothing is returned as it is.

    Everything is checked before anything is written: an override that changes the net (``model.*``) or a config
    group is refused, so a failed resume never leaves its override in the run's config."""
    if not continues_run(cfg.get("resume"), cfg.get("ckpt_path")):
        return cfg
    folder = Path(cfg.paths.output_dir)  # hydra.run.dir already points at the run being continued
    resumed = saved_config(folder)
    last, position = resume_point(folder)
    for key in typed_keys:
        name = key.lstrip("+~")
        if name in ("resume", "ckpt_path") or name.startswith("hydra."):
            continue
        if key.startswith("~") or ("." not in name and is_config_group(cfg, name)):
            raise UserError(
                f"{key}: a resumed run keeps its configuration; only values may change (e.g. trainer.max_epochs=120), "
                "not config groups or deletions."
            )
        value = OmegaConf.select(cfg, name)
        if name.startswith("model.") and name not in RUNTIME_MODEL_KEYS:
            saved = OmegaConf.select(resumed, name, default=_ABSENT)
            if saved is _ABSENT or saved != value:
                has = "no such setting" if saved is _ABSENT else f"{name}={saved}"
                raise UserError(
                    f"{name}={value}: a resumed run keeps its net, and this changes it (the run has {has}). Only "
                    f"{' and '.join(RUNTIME_MODEL_KEYS)} may change; for another net, start a new run."
                )
            continue
        if name in MID_EPOCH_KEYS and position.get("mid_epoch") and OmegaConf.select(resumed, name) != value:
            raise UserError(
                f"{name}={value}: the run stopped in the middle of epoch {position['epoch']} (step {position['step']}, "
                f"after {position['batches']} batches), and the order of that epoch's samples follows "
                f"{name}={OmegaConf.select(resumed, name)}: another value would serve some of them twice and skip "
                f"others. Resume with {name}={OmegaConf.select(resumed, name)}, and change it at an epoch's end."
            )
        OmegaConf.update(resumed, name, value, force_add=True)
    resumed.ckpt_path, resumed.resume = str(last), str(folder)
    log.info("Continuing %s from %s", folder, last)
    return resumed
