"""How a run ends early: stop signals that keep a checkpoint, and the exit codes (and messages) a run leaves with.

Lightning stops after SIGTERM at the next boundary it checks and raises ``SIGTERMException`` on every rank: mid-
validation, at the end of a training batch (after its row is logged), at the end of an epoch (after its metrics,
its learning-rate step and the epoch's checkpoints). Two of those its own restore cannot continue exactly from: mid-
validation (the resumed run never logs that epoch's validation) and the end of an epoch's *last* batch, after its
validation but before the epoch's end (it resumes past the epoch's end metrics and schedule step). So Lightning is
told of a signal only where the next boundary is a clean one: during an epoch's last batch, or a validation, the
signal waits for the epoch's end (or the validation's). Then the current step, validation and epoch finish and are
logged, ``last.ckpt`` is saved, and the process exits with 128 + the signal's number.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet.errors import UserError
from alexnet.run.folder import launching_process, slurm_job_id

log = logging.getLogger(__name__)

STOP_SIGNALS = {
    signal.SIGINT: "SIGINT",
    signal.SIGTERM: "SIGTERM",
    signal.SIGUSR1: "SIGUSR1",
    signal.SIGUSR2: "SIGUSR2",  # submitit's time-limit and pre-emption warning (SUBMITIT_PREEMPT_SIGNAL)
}
# What gloo and NCCL say when a peer process has gone away mid-collective.
PEER_FAILURES = (
    "gloo/transport",  # every gloo socket error names its transport source file
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
)


class StopOnSignal(Callback):
    """SIGTERM, SIGINT (Ctrl+C) and SIGUSR1 (SLURM's ``--signal`` warning before pre-emption) stop the run at the
    next clean boundary (see the module docstring), save ``<dirpath>/last.ckpt`` and end the run; ``alexnet-train
    resume=<run folder>`` continues it exactly. A second Ctrl+C stops at once. Only fitting saves: a signal during
    the test (of the best epoch's weights) leaves ``last.ckpt`` as it is.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.received: str | None = None
        self.saved: Path | None = None
        self._previous: dict[int, Any] = {}
        self._lightning: Callable[[int, Any], None] | None = None  # Lightning's SIGTERM handler
        self._waiting = False  # a signal came where Lightning must not stop yet
        self._in_last_batch = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Ctrl+C from here on, the sanity check included (Lightning would end with exit status 1 there). SIGUSR1 now
        # too: Lightning installs its own SLURM requeue handler (an hpc_ckpt_*.ckpt at whatever moment) only where
        # none is installed yet.
        self._install(trainer, (signal.SIGINT, signal.SIGUSR1, *submitit_signal()))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning has installed its SIGTERM handler by now: ours goes in front of it, and calls it when it is time.
        lightning = signal.getsignal(signal.SIGTERM)
        self._lightning = lightning if callable(lightning) else None
        self._install(trainer, (signal.SIGTERM,))

    def _install(self, trainer: L.Trainer, signals: tuple[int, ...]) -> None:
        if not _main_thread():
            return
        for signum in signals:
            self._previous.setdefault(signum, signal.getsignal(signum))

            def handler(signum: int, frame: Any) -> None:
                self.received = self.received or STOP_SIGNALS[signum]
                if signum == signal.SIGINT:
                    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C interrupts at once
                if trainer.validating or trainer.sanity_checking or self._in_last_batch or self._lightning is None:
                    self._waiting = True
                else:
                    self._tell_lightning()

            signal.signal(signum, handler)

    def _tell_lightning(self) -> None:
        self._waiting = False
        if self._lightning is not None:
            self._lightning(signal.SIGTERM, None)  # Lightning raises SIGTERMException at its next boundary

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self._in_last_batch = idx + 1 >= trainer.num_training_batches
        if self._waiting and not self._in_last_batch:
            self._tell_lightning()  # it stops at the end of this batch, its row logged

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._waiting and trainer.training and not self._in_last_batch:
            self._tell_lightning()  # a validation inside the epoch (val_check_interval < 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_last_batch = False
        if self._waiting:
            self._tell_lightning()  # it stops once the epoch's end (metrics, schedule, checkpoints) is done

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):  # a second Ctrl+C
            self.received = self.received or "SIGINT"
        # Not in the sanity check (Lightning's own handler is in place until training starts): nothing has been
        # trained yet, and a checkpoint from inside a validation would resume that validation half-way.
        elif (
            isinstance(exception, SIGTERMException)
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
        ):
            self.saved = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(self.saved)
            if self.received == "SIGUSR1":
                requeue_slurm_job()
            elif self.received == "SIGUSR2" and callable(submitit := self._previous.get(signal.SIGUSR2)):
                self._restore()
                submitit(signal.SIGUSR2, None)  # submitit requeues the job (hydra.launcher.max_num_timeout) and exits
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def _restore(self) -> None:
        if _main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous = {}


def submitit_signal() -> tuple[int, ...]:
    """The signal submitit warns a job with before its time limit or a pre-emption, inside a submitit job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return ()
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    signum = getattr(signal, f"SIG{name.removeprefix('SIG')}", None)
    return (signum,) if signum in STOP_SIGNALS else ()


def requeue_slurm_job() -> bool:
    """Under SLURM, after SIGUSR1 (``sbatch --signal=USR1@120``: the time limit or a pre-emption is near) and the
    checkpoint: put the job back in the queue (``scontrol requeue``, from the job's first task only). The requeued job
    runs the same command; with ``resume=auto`` it continues this run folder by itself. True when requeued."""
    job = slurm_job_id()
    if job is None or not launching_process():
        return False
    try:
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=60, capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or error
        log.warning("Could not requeue SLURM job %s (%s); resubmit it with resume=<run folder>.", job, detail)
        return False
    log.warning("Requeued SLURM job %s: when it starts again, resume=auto continues this run folder.", job)
    return True


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def ending_as_exit_codes(trainer: L.Trainer, run_folder: Path) -> Iterator[None]:
    """How a run that ends early leaves the process: a stop signal exits with 128 + its number after saying
    where the checkpoint is and how to resume; a DDP peer that died is a one-line error naming ``resume=``."""
    stopper = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)
    try:
        yield
    except SIGTERMException:
        signal_name = stopper.received if stopper and stopper.received else "SIGTERM"
        saved = stopper.saved if stopper else None
        resume = f"alexnet-train resume={run_folder}"
        if trainer.state.fn != TrainerFn.FITTING:
            outcome = f"during the test; the checkpoints are unchanged. Test again with: {resume}"
        elif saved:
            outcome = f"at step {trainer.global_step}. Checkpoint: {saved}. Continue with: {resume}"
        else:
            why = "callbacks.stop_on_signal is off" if stopper is None else "training had not begun"
            earlier = (Path(run_folder) / "checkpoints" / "last.ckpt").is_file()
            then = f"Continue from the last one with: {resume}" if earlier else "Start the run again."
            outcome = f"at step {trainer.global_step}. No checkpoint was saved ({why}). {then}"
        log.warning("Stopped by %s %s", signal_name, outcome)
        signum = next((s for s, name in STOP_SIGNALS.items() if name == signal_name), signal.SIGTERM)
        raise SystemExit(128 + int(signum)) from None
    except SystemExit as exit_:  # after SIGTERMException, which is a SystemExit too
        # Lightning ends a KeyboardInterrupt with exit status 1; a Ctrl+C is 130, with where to continue from.
        if exit_.code != 1 or stopper is None or stopper.received != "SIGINT":
            raise
        last = stopper.dirpath / "last.ckpt"
        when = "during the test" if trainer.state.fn != TrainerFn.FITTING else f"at step {trainer.global_step}"
        found = f"The last checkpoint is {last}." if last.is_file() else "No checkpoint was saved yet."
        hint = f" Continue with: alexnet-train resume={run_folder}" if last.is_file() else ""
        log.warning("Stopped by Ctrl+C (SIGINT) %s, at once. %s%s", when, found, hint)
        raise SystemExit(128 + int(signal.SIGINT)) from None
    except RuntimeError as error:
        if trainer.world_size > 1 and any(s in str(error) for s in PEER_FAILURES):
            first_line = str(error).strip().splitlines()[0][:300]
            raise UserError(
                f"Another DDP rank stopped, so this one stops too ({first_line}). Look at the failed rank's log, "
                f"then continue from the last checkpoint: alexnet-train resume={run_folder}"
            ) from error
        raise
