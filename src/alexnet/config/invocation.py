"""What Hydra knows about one invocation and the config does not, as plain values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

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
        hydra_node: Hydra's own config of the job (``hydra:``), as plain data, for the run's ``.hydra/`` record.
        log_name: the job's log file name (``hydra.job.name``: ``train``, ``train_ddp_process_1``...); None: none.
        output_dir: the job's folder (``hydra.runtime.output_dir``), which Hydra has made by the time a job runs.
    """

    overrides: tuple[str, ...] = ()
    multirun: bool = False
    sweep_dir: str | None = None
    experiment: str | None = None
    hydra_node: dict | None = None
    log_name: str | None = None
    output_dir: str | None = None

    @classmethod
    def from_hydra(cls, hydra: DictConfig) -> Invocation:
        """From the ``hydra`` node (``HydraConfig.get()``) of a running command."""
        multirun = hydra.mode == RunMode.MULTIRUN
        return cls(
            overrides=tuple(hydra.overrides.task),
            multirun=multirun,
            sweep_dir=str(hydra.sweep.dir) if multirun else None,
            experiment=hydra.runtime.choices.get("experiment"),
            hydra_node=OmegaConf.to_container(hydra, resolve=False),
            log_name=str(hydra.job.name),
            output_dir=str(hydra.runtime.output_dir),
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
