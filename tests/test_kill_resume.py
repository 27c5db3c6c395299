"""Exact resume at every moment: a deterministic CPU run is killed (SIGKILL, and SIGTERM, which saves a checkpoint
and stops) at each class of moment, resumed with ``resume=`` until it finishes, and compared with the same run
left alone: the same global step, every epoch's rows once, bit-identical final weights, the same best checkpoint,
the same test result.

Each run is a forked child of this process (the same interpreter, torch already imported: a run costs about a
second rather than the several a new Python needs to import torch and Lightning), with one intra-op thread, as the
uninterrupted reference is, so the arithmetic is the same in both. A kill comes from a callback (``Killer``) or
from inside the checkpoint writer, at the moment named.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from alexnet.config.invocation import Invocation
from alexnet.errors import reported_user_errors
from alexnet.run import checkpoint_io, training
from conftest import read_metrics, train_config

EPOCHS, STEPS_PER_EPOCH = 3, 4
# Step checkpoints every 2 steps: step 4, 8 and 12 are also an epoch's last batch (Lightning's known trap).
RUN = [
    "model.input_size=67",
    "model.channels=[8,16,16,16,16]",
    "model.hidden_size=32",
    "data.batch_size=16",
    f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.deterministic=true",
    "callbacks.checkpoint.every_n_train_steps=2",
    "model.init=xavier",
    "scheduler=step",
    "scheduler.step_size=1",
    "scheduler.gamma=0.5",
]  # a new rate every epoch: none may be lost


class Killer(Callback):
    """Sends this process ``signum`` at the ``count``-th call of ``hook`` for which ``when`` holds."""

    def __init__(self, hook: str, signum: int, count: int = 1, when: Callable[..., bool] | None = None) -> None:
        self.signum, self.left, self.when = signum, count, when or (lambda trainer, *args: True)
        setattr(self, hook, self._maybe)

    def _maybe(self, trainer, *args) -> None:
        if self.left and self.when(trainer, *args):
            self.left -= 1
            if not self.left:
                os.kill(os.getpid(), self.signum)


def not_sanity(trainer, *args) -> bool:
    return not trainer.sanity_checking


def last_batch(trainer, module, outputs, batch, batch_idx) -> bool:
    return batch_idx == STEPS_PER_EPOCH - 1


@dataclass(frozen=True)
class KillPoint:
    name: str
    hook: str | None = None  # a Trainer callback hook; None: inside the checkpoint writer
    count: int = 1
    when: Callable[..., bool] | None = None
    save: int | None = None  # with hook=None: the save-th checkpoint write of the run
    before_rename: bool = False  # with hook=None: the file is written but not yet renamed into place


MOMENTS = [
    KillPoint("mid-batch, epoch 0", "on_before_optimizer_step", count=3),
    KillPoint("mid-batch, epoch 1", "on_before_optimizer_step", count=6),
    KillPoint("mid-batch, epoch 2", "on_before_optimizer_step", count=11),
    KillPoint("right after the step-2 checkpoint", save=1),
    KillPoint("right after the step-4 checkpoint, the epoch's last batch", save=2),
    KillPoint("right after the step-6 checkpoint", save=5),
    KillPoint("between the last batch and validation, epoch 0", "on_train_batch_end", when=last_batch),
    KillPoint("between the last batch and validation, epoch 1", "on_train_batch_end", count=2, when=last_batch),
    KillPoint("at the start of validation, epoch 0", "on_validation_start", when=not_sanity),
    KillPoint("during validation, epoch 0", "on_validation_batch_end", when=not_sanity),
    KillPoint("during validation, epoch 1", "on_validation_batch_end", count=3, when=not_sanity),
    KillPoint("after validation, epoch 0", "on_validation_end", when=not_sanity),
    KillPoint("after validation, epoch 2", "on_validation_end", count=3, when=not_sanity),
    KillPoint("at the end of the training epoch, epoch 1", "on_train_epoch_end", count=2),
    KillPoint("during the epoch-end checkpoint write, epoch 0", save=3, before_rename=True),
    KillPoint("during a step checkpoint write", save=5, before_rename=True),
    KillPoint("during the sanity check", "on_validation_batch_end", when=lambda trainer, *a: trainer.sanity_checking),
    KillPoint("in the test phase", "on_test_batch_end"),
]
POINTS = [(moment, signum) for moment in MOMENTS for signum in (signal.SIGKILL, signal.SIGTERM)]
# Ctrl+C stops as SIGTERM does, with exit status 130, at any moment (Lightning alone would end a sanity check's
# Ctrl+C with status 1 and no checkpoint).
POINTS += [
    (m, signal.SIGINT)
    for m in MOMENTS
    if m.name.startswith(
        ("mid-batch, epoch 1", "during validation, epoch 0", "during the sanity check", "in the test phase")
    )
]


def _child(folder: Path, data: Path, overrides: list[str], point: KillPoint | None, signum: int, log: Path) -> None:
    sys.stdout = sys.stderr = log.open("a")
    torch.set_num_threads(1)
    if point is not None and point.hook is not None:
        build = training.build

        def build_with_killer(cfg, multirun=False):
            run = build(cfg, multirun)
            run.trainer.callbacks.insert(0, Killer(point.hook, signum, point.count, point.when))
            return run

        training.build = build_with_killer
    elif point is not None:
        save, saves = checkpoint_io.AtomicCheckpointIO.save_checkpoint, [0]
        replace = os.replace

        def killing_replace(src, dst):
            if saves[0] == point.save and point.before_rename:
                os.kill(os.getpid(), signum)
            replace(src, dst)

        def save_then_kill(self, checkpoint, path, storage_options=None):
            saves[0] += 1
            save(self, checkpoint, path, storage_options)
            if saves[0] == point.save and not point.before_rename:
                os.kill(os.getpid(), signum)

        checkpoint_io.os.replace = killing_replace
        checkpoint_io.AtomicCheckpointIO.save_checkpoint = save_then_kill
    code = 0
    try:
        cfg = train_config(folder.parent, data, [*RUN, f"paths.output_dir={folder}", *overrides])
        with reported_user_errors():  # as alexnet-train does: one line, exit status 2
            training.train(cfg, Invocation(overrides=tuple(overrides)))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    os._exit(code)


def run_child(
    folder: Path, data: Path, overrides: list[str] = (), point: KillPoint | None = None, signum: int = 0
) -> int:
    """One ``alexnet-train`` run in a forked child; its exit status (negative: the signal that killed it)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(folder, data, list(overrides), point, signum, folder.parent / "runs.log")
    )
    process.start()
    process.join(timeout=600)
    assert process.exitcode is not None, "a run hung"
    return process.exitcode


@dataclass
class Outcome:
    step: int
    weights: dict[str, torch.Tensor]
    best: tuple[str, float]
    rows: dict[str, list[tuple[int, int, str]]]  # metric -> (epoch, step, value) of every row that logged it


def outcome(folder: Path) -> Outcome:
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best_state = next(v for k, v in last["callbacks"].items() if "val/acc_top1" in k)
    rows = read_metrics(folder / "csv" / "metrics.csv")
    metrics = ("train/loss_step", "train/loss_epoch", "val/acc_top1", "test/acc_top1")
    logged = {m: [(int(float(r["epoch"])), int(r["step"]), r[m]) for r in rows if r.get(m)] for m in metrics}
    return Outcome(
        last["global_step"],
        last["state_dict"],
        (Path(best_state["best_model_path"]).name, float(best_state["best_model_score"])),
        logged,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> Outcome:
    folder = tmp_path_factory.mktemp("reference") / "run"
    assert run_child(folder, fashion_root) == 0, (folder.parent / "runs.log").read_text()[-3000:]
    result = outcome(folder)
    assert result.step == EPOCHS * STEPS_PER_EPOCH
    assert [e for e, _, _ in result.rows["val/acc_top1"]] == list(range(EPOCHS))
    return result


@pytest.mark.slow
@pytest.mark.parametrize(("point", "signum"), POINTS, ids=[f"{p.name} ({signal.Signals(s).name})" for p, s in POINTS])
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_result(
    point: KillPoint, signum: int, tmp_path: Path, fashion_root: Path, reference: Outcome
) -> None:
    folder = tmp_path / "run"
    first = run_child(folder, fashion_root, point=point, signum=signum)
    log = tmp_path / "runs.log"
    assert first in (-signal.SIGKILL, 128 + signum, 0), log.read_text()[-3000:]
    if first != 0 and not (folder / "checkpoints" / "last.ckpt").exists():
        # Killed before its first checkpoint: a resume says so and to start again; starting again is the reference.
        assert run_child(folder, fashion_root, [f"resume={folder}"]) == 2
        assert "stopped before its first checkpoint. Start it again" in log.read_text()
        return
    resumes = 0
    while first != 0 and resumes < 3:
        resumes += 1
        first = run_child(folder, fashion_root, [f"resume={folder}"])
        assert first == 0, log.read_text()[-3000:]
    result = outcome(folder)
    assert result.step == reference.step
    assert result.rows == reference.rows, "every row once, at the same step and epoch"
    assert result.best == reference.best
    for key, value in reference.weights.items():
        assert torch.equal(result.weights[key], value), f"{key} differs"
