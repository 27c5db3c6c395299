"""What Hydra knows about one invocation and the config does not, as plain values."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

# Overrides that say where a job reads and writes, not what it computes: left out of a job's name.
_PLACE_KEYS = ("paths.", "data.root", "hydra.", "resume", "ckpt_path", "logger", "callbacks")
_GROUP_LENGTH = 128


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(sweep_dir: str | Path) -> tuple[str, ...] | None:
    """The keys a multirun sweeps (``model.lrn=true,false`` typed, or listed in ``hydra.sweeper.params``), read from
    the ``multirun.yaml`` that Hydra's sweepers write into the sweep folder before they launch a job (a job's own
    record holds only its own values). None when it cannot be read."""
    try:
        master = OmegaConf.load(Path(sweep_dir) / "multirun.yaml")
        typed = [str(o) for o in master.hydra.overrides.task]
        params = master.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params, resolve=False) if params else {}
    except Exception:  # missing, unreadable or not Hydra's: the caller falls back to the job's own overrides
        return None
    parser = OverridesParser.create()
    keys = set()
    for text in [*(f"{k}={v}" for k, v in params.items()), *typed]:  # a key typed replaces the config's sweep of it
        try:
            override = parser.parse_override(text)
        except HydraException:
            continue
        if override.is_sweep_override():
            keys.add(override.key_or_group)
        else:
            keys.discard(override.key_or_group)
    return tuple(sorted(keys))


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
        swept: under ``-m``, the keys the sweep varies (``swept_keys``); None if unknown.
    """

    overrides: tuple[str, ...] = ()
    multirun: bool = False
    sweep_dir: str | None = None
    experiment: str | None = None
    hydra_node: dict | None = None
    log_name: str | None = None
    output_dir: str | None = None
    swept: tuple[str, ...] | None = None

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
            # missing in a compose() outside a running command (tests, tools)
            output_dir=None if OmegaConf.is_missing(hydra.runtime, "output_dir") else str(hydra.runtime.output_dir),
            swept=swept_keys(hydra.sweep.dir) if multirun else None,
        )

    def typed_keys(self, prefix: str = "") -> list[str]:
        """The keys of the overrides typed (``+``/``~`` kept) that start with ``prefix``."""
        keys = [o.split("=", 1)[0] for o in self.overrides]
        return [k for k in keys if k.lstrip("+~").startswith(prefix)]

    def _chosen(self) -> list[str]:
        return sorted(o for o in self.overrides if not o.lstrip("+~").startswith(_PLACE_KEYS))

    @property
    def job_name(self) -> str | None:
        """The overrides that make this job differ (``model.groups=1,model.lrn=false``), without paths."""
        return ",".join(self._chosen()) or None

    @property
    def seed(self) -> str | None:
        """The seed typed for this job (``seed=3``; one value of a ``seed=1,2,3`` sweep), if any."""
        return next((o.split("=", 1)[1] for o in self.overrides if _key(o) == "seed"), None)

    @property
    def run_group(self) -> str | None:
        """W&B group: under -m the sweep's folder name; when the sweep varies the seed, the job's configuration too
        (the swept overrides but the seed: ``sweep-<folder>/model.lrn=false``), so that W&B draws the runs of one
        configuration as their mean and spread. Else the experiment's name. Without the sweep's record, every
        override typed but the seed is the configuration; W&B keeps a group name to 128 characters, so a longer one
        is shortened to its start and a hash."""
        if not (self.multirun and self.sweep_dir):
            return self.experiment
        group = f"sweep-{Path(self.sweep_dir).name}"
        if self.seed is None or (self.swept is not None and "seed" not in self.swept):
            return group
        configuration = ",".join(
            o for o in self._chosen() if _key(o) != "seed" and (self.swept is None or _key(o) in self.swept)
        )
        if not configuration:
            return group
        group = f"{group}/{configuration}"
        if len(group) > _GROUP_LENGTH:
            digest = hashlib.sha256(group.encode()).hexdigest()[:10]
            group = f"{group[: _GROUP_LENGTH - 12]}..{digest}"
        return group
