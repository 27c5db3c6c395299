"""The study a search continues, in a storage every job can reach.

The sweeper asks for trials and tells their results; each job reports its own validation score per epoch to the
same study (``pruning.py``). Jobs may run in other processes (``hydra/launcher=local``) or on other machines
(SLURM), so the study lives in a storage named by one string (or a ``_target_`` config of any Optuna storage):

- ``sqlite:///<file>.db``: one machine (the default, ``${paths.log_dir}/optuna/<study>.db``);
- ``postgresql://...``, ``mysql+pymysql://...``: any SQLAlchemy URL, an RDB server every node reaches;
- a file path without ``://`` (``/shared/optuna/study.log``): Optuna's journal file, for a file system shared by
  the nodes (NFS), where SQLite's locking is unsafe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from alexnet.errors import UserError

SQLITE_BUSY_TIMEOUT_S = 60  # jobs and the sweeper write at the same time; SQLite's default wait is 5 s


def open_storage(spec: Any) -> BaseStorage:
    """The storage ``spec`` names: an RDB URL, a journal file path, a ``_target_`` config or a storage itself."""
    if isinstance(spec, BaseStorage):
        return spec
    if isinstance(spec, DictConfig | dict):
        return instantiate(spec)
    if not isinstance(spec, str) or not spec:
        raise UserError(f"hydra.sweeper.storage={spec!r}: give an RDB URL (sqlite:///file.db) or a journal file path.")
    if "://" in spec:
        options = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if spec.startswith("sqlite") else {}
        try:
            return RDBStorage(spec, engine_kwargs=options)
        except Exception as error:  # SQLAlchemy's and the drivers' errors for a URL that cannot be opened
            raise UserError(f"hydra.sweeper.storage={spec}: cannot open it ({error}).") from error
    file = Path(spec).expanduser().absolute()
    file.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(file)))


def build(spec: Any, **arguments: Any) -> Any:
    """A sampler or pruner from its ``_target_`` config (None stays None)."""
    if spec is None:
        return None
    if isinstance(spec, DictConfig | dict):
        config = OmegaConf.create(spec) if isinstance(spec, dict) else spec
        return instantiate(config, **arguments)
    return spec


def pruner_of(spec: Any) -> optuna.pruners.BasePruner:
    """The pruner ``spec`` configures; none configured never prunes (Optuna's own default would be a median
    pruner)."""
    return build(spec) or optuna.pruners.NopPruner()


def open_study(study_name: str, storage: Any, direction: str, sampler: Any = None, pruner: Any = None) -> optuna.Study:
    """Create the study, or continue it: its earlier trials are kept. A sampler configured with a ``seed``
    gets ``seed + the number of trials already in the study``, so a continued search draws new values rather
    than the first call's again."""
    if direction not in ("maximize", "minimize"):
        raise UserError(f"hydra.sweeper.direction={direction}: must be maximize or minimize.")
    study = optuna.create_study(
        study_name=study_name, storage=open_storage(storage), direction=direction, pruner=pruner_of(pruner),
        load_if_exists=True,
    )  # fmt: skip
    if study.direction.name.lower() != direction:
        raise UserError(
            f"The study {study_name!r} already exists and was made to {study.direction.name.lower()} its value, not "
            f"to {direction}: give another hydra.sweeper.study_name."
        )
    seed = sampler.get("seed") if isinstance(sampler, DictConfig | dict) else None
    arguments = {"seed": seed + len(study.trials)} if seed is not None else {}
    study.sampler = build(sampler, **arguments) or optuna.samplers.TPESampler()
    return study
