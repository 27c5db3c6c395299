"""Where the Hydra config tree lives (``conf/`` at the repository root, or inside an installed wheel), and the
resolvers its run folders use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

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


def sqlite_url(path: str) -> str:
    """An SQLite URL for an Optuna study file; SQLite cannot create the folder itself."""
    file = Path(path).expanduser().absolute()
    file.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{file}"


OmegaConf.register_new_resolver("alexnet.run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("alexnet.sqlite", sqlite_url, replace=True)
OmegaConf.register_new_resolver("alexnet.output_subdir", output_subdir, replace=True)


def typed_overrides(prefix: str = "") -> list[str]:
    """The keys of ``key=value`` overrides typed on the command line that start with ``prefix``."""
    if not HydraConfig.initialized():
        return []
    keys = [o.split("=", 1)[0] for o in HydraConfig.get().overrides.task]
    return [k for k in keys if k.lstrip("+~").startswith(prefix)]
