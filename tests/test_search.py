"""The Optuna search's parts without training: Hydra's sweep syntax as Optuna distributions, the ask-and-tell loop
on Hydra job results, the study's storage and continuation, the pruning callback's guards, and the environment
(Optuna 5; nothing the project depends on pins optuna < 3 or sqlalchemy < 2). The search end to end, with pruning
through both launchers, is in test_sweeps.py."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.trial import TrialState
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from alexnet.errors import UserError
from alexnet.search.pruning import OptunaPruning, TrialPruned
from alexnet.search.space import parse_space
from alexnet.search.study import open_storage, open_study
from alexnet.search.trials import run_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_hydra_sweep_syntax_becomes_optuna_distributions() -> None:
    space = parse_space([
        "optimizer.lr=tag(log, interval(0.001, 0.1))", "model.dropout=interval(0.2, 0.6)",
        "data.batch_size=int(interval(16, 256))", "trainer.max_epochs=range(2, 11, 4)", "model.lrn=true,false",
        "module.label_smoothing=choice(0.0, 0.1)", "trainer.max_steps=range(0, 1, 0.25)", "seed=7",
        "model.dropout=interval(0.1, 0.5)",  # given twice: the later one (the command line's) wins
    ])  # fmt: skip
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(0.001, 0.1, log=True),
        "model.dropout": FloatDistribution(0.1, 0.5),
        "data.batch_size": IntDistribution(16, 256),
        "trainer.max_epochs": IntDistribution(2, 10, step=4),
        "model.lrn": CategoricalDistribution([True, False]),
        "module.label_smoothing": CategoricalDistribution([0.0, 0.1]),
        "trainer.max_steps": CategoricalDistribution([0.0, 0.25, 0.5, 0.75]),
    }
    assert space.fixed == ["seed=7"]
    trial = {"optimizer.lr": 0.0123, "model.lrn": False, "data.batch_size": 64, "module.label_smoothing": 0.1}
    # a choice goes back as Hydra wrote it (its basic sweeper too writes False)
    assert space.overrides(trial) == ["seed=7", "optimizer.lr=0.0123", "model.lrn=False", "data.batch_size=64",
                                      "module.label_smoothing=0.1"]  # fmt: skip


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=choice([0.1],[0.2])", "optimizer.lr: Optuna chooses among numbers, strings, booleans or null"),
        ("optimizer.lr=interval(0.1", "The search space cannot be read"),
    ],
)
def test_a_search_space_optuna_cannot_sample_is_one_message(override: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        parse_space([override])


def job(status: JobStatus, value: object) -> JobReturn:
    return JobReturn(overrides=[], status=status, _return_value=value)


def test_each_trial_is_told_as_its_job_ended(capsys: pytest.CaptureFixture) -> None:
    study = optuna.create_study(direction="maximize")
    space = parse_space(["optimizer.lr=choice(0.1, 0.01)", "trainer.max_epochs=2"])
    results = iter([job(JobStatus.COMPLETED, 0.75), job(JobStatus.FAILED, TrialPruned("pruned at epoch 1")),
                    job(JobStatus.COMPLETED, 0.5), job(JobStatus.FAILED, RuntimeError("out of memory"))])  # fmt: skip
    launched = []

    def launch(batch: list[list[str]]) -> list[JobReturn]:
        launched.append(batch)
        return [next(results) for _ in batch]

    outcome = run_trials(study, space, launch, n_trials=4, n_jobs=2, trial_override="callbacks.x.trial",
                         max_failure_rate=0.5)  # fmt: skip
    assert (outcome.complete, outcome.pruned, outcome.failed) == (2, 1, 1)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE,
                                               TrialState.FAIL]  # fmt: skip
    assert [t.value for t in study.trials[:3]] == [0.75, None, 0.5]
    assert [len(batch) for batch in launched] == [2, 2], "n_jobs trials launched together"
    first = launched[0][0]
    assert first[0] == "trainer.max_epochs=2" and first[-1] == "callbacks.x.trial=0"
    assert first[1] == f"optimizer.lr={study.trials[0].params['optimizer.lr']}"
    assert "Error executing job" not in capsys.readouterr().err, "a pruned trial is no error"


def test_too_many_failures_stop_the_search_with_the_jobs_own_error() -> None:
    study = optuna.create_study(direction="maximize")
    space = parse_space(["optimizer.lr=interval(0.01, 0.1)"])
    results = iter([job(JobStatus.COMPLETED, 0.5), job(JobStatus.FAILED, ValueError("bad batch")),
                    job(JobStatus.COMPLETED, 0.6)])  # fmt: skip
    with pytest.raises(ValueError, match="bad batch"):  # 1 of 2 > 0.25
        run_trials(study, space, lambda batch: [next(results)], n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    study = optuna.create_study(direction="maximize")
    with pytest.raises(UserError, match="set optimized_metric to a metric the run logs"):
        run_trials(study, space, lambda batch: [job(JobStatus.COMPLETED, None)], n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_a_continued_study_keeps_its_trials_and_draws_new_values(tmp_path: Path) -> None:
    """A seeded sampler restarted with the same seed would propose the first call's values again."""
    storage = str(tmp_path / "study.log")  # a journal file: quicker to create than SQLite's tables
    sampler = OmegaConf.create({"_target_": "optuna.samplers.RandomSampler", "seed": 3})
    space = {"x": FloatDistribution(0, 1)}
    drawn = []
    for _ in range(2):
        study = open_study("s", storage, "maximize", sampler, pruner=None)
        for _ in range(2):
            trial = study.ask(space)
            drawn.append(trial.params["x"])
            study.tell(trial, trial.params["x"])
    assert len(optuna.load_study(study_name="s", storage=open_storage(storage)).trials) == 4
    assert len(set(drawn)) == 4, drawn
    fresh = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    expected = [fresh.ask(space).params["x"] for _ in range(2)]
    assert drawn[2:] == expected, "the second call's sampler is seeded 3 + the 2 trials already in the study"
    with pytest.raises(UserError, match="was made to maximize its value, not to minimize"):
        open_study("s", storage, "minimize")


def test_storages_for_one_machine_and_for_a_cluster(tmp_path: Path) -> None:
    journal = open_storage(str(tmp_path / "shared" / "study.log"))
    assert isinstance(journal, JournalStorage)
    study = optuna.create_study(study_name="j", storage=journal, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert (tmp_path / "shared" / "study.log").stat().st_size > 0
    again = optuna.load_study(study_name="j", storage=open_storage(str(tmp_path / "shared" / "study.log")))
    assert len(again.trials) == 2, "another process opening the journal file sees the trials"
    configured = open_storage({"_target_": "optuna.storages.InMemoryStorage"})
    assert isinstance(configured, optuna.storages.InMemoryStorage)
    with pytest.raises(UserError, match="hydra.sweeper.storage=nosuchdb://x: cannot open it"):
        open_storage("nosuchdb://x")


def test_the_pruning_callback_leaves_runs_outside_a_search_and_finished_trials_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.optimize(lambda trial: 0.5, n_trials=1)
    outside = OptunaPruning("s", storage, trial=None)
    outside.setup(None, None, "fit")
    assert outside._reporter is None
    resumed = OptunaPruning("s", storage, trial=0)  # a trial's run folder resumed after the search
    resumed.setup(None, None, "fit")
    assert resumed._reporter is None and "Trial 0 of 's' is COMPLETE already: not reporting" in caplog.text
    running = study.ask()
    reporting = OptunaPruning("s", storage, trial=running.number)
    reporting.setup(None, None, "fit")
    assert reporting._reporter is not None and reporting._reporter._trial.number == running.number
    with pytest.raises(UserError, match="has no trial 9"):
        OptunaPruning("s", storage, trial=9).setup(None, None, "fit")
    with pytest.raises(UserError, match="No study 'other'"):
        OptunaPruning("other", storage, trial=0).setup(None, None, "fit")


def test_hparams_search_selects_this_projects_sweeper_which_hydra_finds() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from alexnet.config.location import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["hparams_search=fashion_mnist_optuna"], return_hydra_config=True)
    target = "hydra_plugins.alexnet_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert cfg.hydra.sweeper._target_ == target and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.callbacks.optuna_pruning.trial is None and cfg.hydra.sweeper.trial_override.endswith(".trial")
    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)}
    assert target in found, found


def dependency_closure(name: str) -> set[str]:
    """The installed distributions ``name`` needs, itself included (markers evaluated, extras left out)."""
    found, todo = set(), [canonicalize_name(name)]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        for text in metadata.distribution(current).requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return found


def test_the_search_runs_on_optuna_5_and_nothing_the_project_needs_pins_old_optuna_or_sqlalchemy() -> None:
    assert optuna.__version__.split(".")[0] == "5", optuna.__version__
    assert metadata.version("optuna-integration").split(".")[0] == "5"
    closure = dependency_closure("alexnet")
    assert {"optuna", "optuna-integration", "sqlalchemy", "alembic", "scipy"} <= closure
    assert "hydra-optuna-sweeper" not in closure
    for name in closure:
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) in ("optuna", "sqlalchemy"):
                assert requirement.specifier.contains("5.0" if requirement.name.lower() == "optuna" else "2.1"), (
                    f"{name} requires {text}"
                )
    # pip's own check, on every distribution the project needs
    checked = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    broken = [line for line in checked.stdout.splitlines() if canonicalize_name(line.split(" ")[0]) in closure]
    assert not broken, broken
