"""How a run ends early: stop signals that keep a checkpoint, and the exit codes (and messages) a run leaves with.

Lightning already stops at a step boundary after SIGTERM (it raises ``SIGTERMException`` once the current
step is done, on every rank). What it does not do is keep a checkpoint of that step, or treat Ctrl+C or SLURM's
warning signal the same way; this module adds both.
"""

from __future__ import annotations

import logging
import os
import signal
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

log = logging.getLogger(__name__)

STOP_SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGUSR1: "SIGUSR1"}
# What gloo and NCCL say when a peer process has gone away mid-collective.
PEER_FAILURES = (
    "gloo/transport",  # every gloo socket error names its transport source file
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "NCCL communicator was aborted",
)


class StopOnSignal(Callback):
    """SIGTERM, SIGINT (Ctrl+C) and SIGUSR1 (SLURM's ``--signal`` warning before pre-emption) finish the current
    step, save ``<dirpath>/last.ckpt`` and end the run; ``alexnet-train resume=<run folder>`` continues it.

    SIGINT and SIGUSR1 are turned into SIGTERM, so every rank stops at the same step boundary through
    Lightning's own SIGTERM path. A second Ctrl+C stops at once. A signal during validation lets the validation
    finish first (Lightning would stop mid-validation, and the resumed run would never log that epoch's metrics).
    Only fitting saves: a signal during the test (of the best epoch's weights) leaves ``last.ckpt`` as it is.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.received: str | None = None
        self.saved: Path | None = None
        self._previous: dict[int, Any] = {}
        self._deferred: Callable[[], None] | None = None

    def _forward(self, signum: int, frame: Any) -> None:
        self.received = self.received or STOP_SIGNALS[signum]
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C interrupts at once
        os.kill(os.getpid(), signal.SIGTERM)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning has installed its SIGTERM handler by now; chain ours in front of it to learn the signal.
        lightning_sigterm = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            self.received = self.received or "SIGTERM"
            if not callable(lightning_sigterm):
                return
            if trainer.validating:  # told to Lightning once the validation is over (on_validation_end)
                self._deferred = lambda: lightning_sigterm(signum, frame)
            else:
                lightning_sigterm(signum, frame)

        if _main_thread():
            self._previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
            signal.signal(signal.SIGTERM, on_sigterm)
            signal.signal(signal.SIGINT, self._forward)
            signal.signal(signal.SIGUSR1, self._forward)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            deferred()  # Lightning stops at the next step boundary, after this epoch's metrics are logged

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            self.saved = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(self.saved)
        self._restore()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def _restore(self) -> None:
        if _main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous = {}


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def ending_as_exit_codes(trainer: L.Trainer, run_folder: Path) -> Iterator[None]:
    """How a run that ends early leaves the process: a stop signal exits with 128 + its number after saying
    where the checkpoint is and how to resume; a DDP peer that died is a one-line error naming ``resume=``."""
    try:
        yield
    except SIGTERMException:
        stopper = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)
        signal_name = stopper.received if stopper and stopper.received else "SIGTERM"
        saved = stopper.saved if stopper else None
        if trainer.state.fn != TrainerFn.FITTING:
            outcome, action = "during the test; the checkpoints are unchanged.", "Test again with"
        elif saved:
            outcome, action = f"at step {trainer.global_step}. Checkpoint: {saved}.", "Continue with"
        else:
            outcome = f"at step {trainer.global_step}. No checkpoint was saved (callbacks.stop_on_signal is off)."
            action = "Continue with"
        log.warning("Stopped by %s %s %s: alexnet-train resume=%s", signal_name, outcome, action, run_folder)
        signum = next((s for s, name in STOP_SIGNALS.items() if name == signal_name), signal.SIGTERM)
        raise SystemExit(128 + int(signum)) from None
    except RuntimeError as error:
        if trainer.world_size > 1 and any(s in str(error) for s in PEER_FAILURES):
            first_line = str(error).strip().splitlines()[0][:300]
            raise UserError(
                f"Another DDP rank stopped, so this one stops too ({first_line}). Look at the failed rank's log, "
                f"then continue from the last checkpoint: alexnet-train resume={run_folder}"
            ) from error
        raise
