"""A W&B run per job: its id, name and group chosen before the run starts, and its end recorded whatever
happens. Does nothing for runs without a ``WandbLogger``."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, open_dict


def is_wandb(entry: DictConfig | None) -> bool:
    return entry is not None and str(entry.get("_target_", "")).endswith("WandbLogger")


def name_wandb_runs(
    logger_cfg: DictConfig | None, name: str | None, group: str | None, seed: str | None = None
) -> None:
    """Give each W&B logger entry an id, a name and a group, unless set, and a ``seed=<n>`` tag for a job given its
    seed. Done before the run's config is saved: the saved id is what lets ``resume=<run folder>`` reopen the same
    W&B run."""
    for entry in (logger_cfg or {}).values():
        if not is_wandb(entry):
            continue
        with open_dict(entry):
            entry.id = entry.get("id") or "".join(
                secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)
            )
            entry.name = entry.get("name") or name
            entry.group = entry.get("group") or group
            tags = list(entry.get("tags") or [])
            if seed is not None and f"seed={seed}" not in tags:
                entry.tags = [*tags, f"seed={seed}"]


@contextmanager
def finishing_wandb(loggers: list[Logger]) -> Iterator[None]:
    """Finish the W&B run when the block ends, marked failed if it raised. Without this the next job of a
    multirun logs into this job's run (W&B keeps one live run per process). An error whose class names a
    ``run_outcome`` (``alexnet.search.pruning.TrialPruned``: "pruned") ended the run as asked: the run is finished,
    not failed, and tagged with that outcome."""
    outcome: str | None = None
    try:
        yield
        outcome = "finished"
    except BaseException as error:
        outcome = getattr(type(error), "run_outcome", None)
        raise
    finally:
        if any(isinstance(logger, WandbLogger) for logger in loggers):
            import wandb

            if outcome not in (None, "finished") and wandb.run is not None:
                wandb.run.tags = (*wandb.run.tags, outcome)
            wandb.finish(exit_code=0 if outcome else 1)
