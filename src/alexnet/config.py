"""Where the Hydra config tree lives (``conf/`` at the repository root, or inside an installed wheel), the
resolvers its run folders use, and what Hydra knows about one invocation, as plain values."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

_PACKAGED = Path(__file__).resolve().parent / "conf"
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "conf"


def latest_resumable_run(runs_dir: Path) -> Path | None:
    """The newest run folder (names sort by start time) holding ``checkpoints/last.ckpt``."""
    candidates = sorted(p.parent.parent for p in runs_dir.glob("*/checkpoints/last.ckpt"))
    return candidates[-1] if candidates else None


def run_dir(resume: str | None, ckpt_path: str | None, log_dir: str, fresh: str) -> str:
    """``resume=<folder>`` and ``ckpt_path=last`` continue a run in its own folder; anything else starts one."""
    if resume:
        return str(Path(resume).expanduser().absolute())
    if ckpt_path == "last" and (latest := latest_resumable_run(Path(log_dir) / "runs")) is not None:
        return str(latest.absolute())
    return fresh


def output_subdir(resume: str | None, ckpt_path: str | None) -> str:
    """A resumed run keeps its original ``.hydra/`` and records each restart's own next to it."""
    if resume or ckpt_path == "last":
        return f".hydra/resumed_{datetime.now():%Y-%m-%d_%H-%M-%S-%f}"
    return ".hydra"


def checkpoint_run_folder(ckpt_path: str | Path) -> Path:
    """The run folder a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` -> ``<run>``; elsewhere, its folder."""
    folder = Path(ckpt_path).expanduser().absolute().parent
    return folder.parent if folder.name == "checkpoints" else folder


def figures_dir(ckpt_path: str | None, fallback: str) -> str:
    """alexnet-figures writes into ``<run>/figures/``; without an existing checkpoint (the command then stops
    with a message) into ``fallback``, so that no folder is made next to a mistyped path."""
    if ckpt_path and Path(ckpt_path).expanduser().is_file():
        return str(checkpoint_run_folder(ckpt_path) / "figures")
    return fallback


def env_or(name: str, default: str) -> str:
    """An environment variable's value; ``default`` when it is unset *or empty* (``oc.env`` would give "", and
    ``ALEXNET_LOG_DIR=`` would then write runs under /runs at the filesystem root)."""
    return os.environ.get(name) or default


def sqlite_url(path: str) -> str:
    """An SQLite URL for an Optuna study file; SQLite cannot create the folder itself."""
    file = Path(path).expanduser().absolute()
    file.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{file}"


OmegaConf.register_new_resolver("alexnet.run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("alexnet.sqlite", sqlite_url, replace=True)
OmegaConf.register_new_resolver("alexnet.env", env_or, replace=True)
OmegaConf.register_new_resolver("alexnet.output_subdir", output_subdir, replace=True)
OmegaConf.register_new_resolver("alexnet.figures_dir", figures_dir, replace=True)

# Overrides that say where a job reads and writes, not what it computes: left out of a job's name.
_PLACE_KEYS = ("paths.", "data.root", "hydra.", "resume", "ckpt_path", "logger", "callbacks")


@dataclass(frozen=True)
class Invocation:
    """What Hydra knows about one command's invocation and the config does not: read once in ``main()`` and
    handed down as plain values, so library code never reads Hydra's global state (and tests need not fake it).

    Args:
        overrides: the overrides typed on the command line, as Hydra records them (``model.lrn=false``).
        multirun: the job is one of a ``-m`` sweep.
        sweep_dir: the sweep's folder under ``-m``.
        experiment: the ``experiment=`` option chosen, if any.
    """

    overrides: tuple[str, ...] = ()
    multirun: bool = False
    sweep_dir: str | None = None
    experiment: str | None = None

    @classmethod
    def from_hydra(cls, hydra: DictConfig) -> Invocation:
        """From the ``hydra`` node (``HydraConfig.get()``) of a running command."""
        multirun = hydra.mode == RunMode.MULTIRUN
        return cls(
            overrides=tuple(hydra.overrides.task),
            multirun=multirun,
            sweep_dir=str(hydra.sweep.dir) if multirun else None,
            experiment=hydra.runtime.choices.get("experiment"),
        )

    def typed_keys(self, prefix: str = "") -> list[str]:
        """The keys of the overrides typed (``+``/``~`` kept) that start with ``prefix``."""
        keys = [o.split("=", 1)[0] for o in self.overrides]
        return [k for k in keys if k.lstrip("+~").startswith(prefix)]

    @property
    def job_name(self) -> str | None:
        """The overrides that make this job differ (``model.groups=1,model.lrn=false``), without paths."""
        chosen = [o for o in self.overrides if not o.lstrip("+~").startswith(_PLACE_KEYS)]
        return ",".join(sorted(chosen)) or None

    @property
    def run_group(self) -> str | None:
        """W&B group: the sweep's folder name under -m, else the experiment's name."""
        if self.multirun and self.sweep_dir:
            return f"sweep-{Path(self.sweep_dir).name}"
        return self.experiment
