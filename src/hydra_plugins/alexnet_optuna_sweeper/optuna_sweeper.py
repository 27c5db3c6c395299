"""``hydra/sweeper=alexnet_optuna`` (conf/hydra/sweeper/alexnet_optuna.yaml): an Optuna search as a Hydra multirun.

Hydra scans every module of ``hydra_plugins`` at the start of each command, so Optuna and the search code are
imported only when a search runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    """Each call adds ``n_trials`` trials to the study ``study_name`` in ``storage`` (created on the first call),
    ``n_jobs`` at a time through the configured launcher, sampled by ``sampler`` from ``params`` (Hydra's sweep
    syntax) and stopped early by ``pruner`` through the job's ``trial_override`` callback."""

    def __init__(
        self,
        study_name: str,
        storage: Any,
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.25,
        sampler: Any = None,
        pruner: Any = None,
        params: DictConfig | None = None,
        trial_override: str | None = "callbacks.optuna_pruning.trial",
    ) -> None:
        self.study_name = study_name
        self.storage = storage
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.sampler = sampler
        self.pruner = pruner
        self.params = params or {}
        self.trial_override = trial_override
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from alexnet.errors import reported_user_errors

        with reported_user_errors():
            return self._search(arguments)

    def _search(self, arguments: list[str]) -> Any:
        from alexnet.errors import UserError
        from alexnet.search.space import parse_space
        from alexnet.search.study import open_study
        from alexnet.search.trials import run_trials

        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        for name, value in (("n_trials", self.n_trials), ("n_jobs", self.n_jobs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"hydra.sweeper.{name}={value}: must be a positive integer.")
        trial_override = self.trial_override
        callback = trial_override.rsplit(".", 1)[0] if trial_override else None
        if callback and OmegaConf.select(self.config, callback) is None:
            if self.pruner is not None:
                raise UserError(
                    f"hydra.sweeper.pruner is set but the config has no {callback} callback to report to it (see "
                    "conf/hparams_search/fashion_mnist_optuna.yaml); or set hydra.sweeper.pruner=null."
                )
            trial_override = None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space = parse_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments], parser)
        study = open_study(self.study_name, self.storage, self.direction, self.sampler, self.pruner)
        log.info(
            "Study %r in %s: %d trials so far; %d more, %d at a time",
            study.study_name, self.storage, len(study.trials), self.n_trials, self.n_jobs,
        )  # fmt: skip
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        launched = 0

        def launch(batch: list[list[str]]) -> Any:
            nonlocal launched
            self.validate_batch_is_legal(batch)  # a bad override fails here, before any job starts
            returns = self.launcher.launch(batch, initial_job_idx=launched)
            launched += len(batch)
            return returns

        outcome = run_trials(study, space, launch, self.n_trials, self.n_jobs, trial_override, self.max_failure_rate)
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "this_call": {"complete": outcome.complete, "pruned": outcome.pruned, "failed": outcome.failed},
            "trials_in_study": len(study.trials),
        }
        completed = [t for t in study.trials if t.state.name == "COMPLETE"]
        if completed:
            results.update(best_trial=study.best_trial.number, best_params=study.best_params,
                           best_value=study.best_value)  # fmt: skip
            log.info("Best so far: trial %d, %s %s", study.best_trial.number, study.best_value, study.best_params)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        return outcome
