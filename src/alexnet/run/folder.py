"""A run folder holds one run, is written by one process at a time, and is self-contained.

- A new run never starts in a folder that already holds one (its ``config_resolved.yaml``): it would replace
  that run's config and metrics beside its checkpoints. ``alexnet-train resume=<folder>`` continues it instead.
- While a run writes, its first process holds an exclusive POSIX record lock (``fcntl.lockf``) on
  ``<folder>/.lock``, which names its pid: a second process is refused at once, naming the first. The kernel drops
  the lock when its holder exits, however it exits, so a lock file left by a dead process never blocks. (Not
  ``flock``: a flock is shared with every process forked while it is held, such as DataLoader workers, which keep
  a killed run's folder locked until they notice their parent is gone.)
- The paths a run saves (in its config, in its checkpoints' callback states) are absolute. A folder that was
  copied or moved is re-rooted when resumed: every path under the folder the run was saved in is read as the
  same path under the folder being resumed, so the copy writes into itself, never into the original.

The Hydra callback ``RunFolderCheck`` makes these checks before Hydra writes anything into the folder (its
``.hydra/`` and log file); ``alexnet-train`` makes them again under the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

from alexnet.errors import UserError

RUN_RECORD = "config_resolved.yaml"
LOCK_FILE = ".lock"
CHECKPOINTS, LAST = "checkpoints", "last.ckpt"
FIGURES = "figures"
# Set in every process of a multi-process run but its first: Lightning's ddp sets LOCAL_RANK (and NODE_RANK) in
# the ranks it starts, torchrun sets RANK, SLURM sets SLURM_PROCID in every task.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def holds_run(folder: Path) -> bool:
    return (folder / RUN_RECORD).is_file()


def continues_run(resume: str | None, ckpt_path: Any) -> bool:
    """``resume=<folder>`` and ``ckpt_path=last`` continue a run in its own folder; anything else starts one."""
    return bool(resume) or ckpt_path == "last"


def launching_process() -> bool:
    """The first process of a run, the one that owns its folder (the other ranks of a DDP run share it)."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def check_run_folder(folder: Path, resume: str | None, ckpt_path: Any) -> None:
    """A run continues only a folder that holds one, and starts only in a folder that holds none."""
    if continues_run(resume, ckpt_path):
        if holds_run(folder):
            return
        if resume:
            raise UserError(
                f"resume={resume}: no run to continue ({folder / RUN_RECORD} is missing). Give resume=<run folder> "
                "of a run alexnet-train started, e.g. resume=outputs/runs/2026-01-31_12-00-00-000000."
            )
        raise UserError(
            f"ckpt_path=last: no run to continue under {folder.parent} (none has checkpoints/last.ckpt). Start a "
            "new run without ckpt_path, or give resume=<run folder>."
        )
    if holds_run(folder):
        raise UserError(
            f"{folder} already holds a run ({RUN_RECORD}); a new run there would mix its config and metrics with "
            f"that run's checkpoints. Continue it with: alexnet-train resume={folder}, or leave hydra.run.dir unset "
            "for a new folder."
        )


def _holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").split()
    return f"process {text[0]} on {text[1]}" if len(text) >= 2 else "another process"


def _refusal(folder: Path, holder: str) -> UserError:
    return UserError(
        f"{folder} is being written by {holder} (it holds {folder / LOCK_FILE}). Wait for it to end or stop it, "
        "then run again; two processes in one run folder would mix their checkpoints, config and metrics."
    )


def lock_holder(folder: Path) -> str | None:
    """Who holds the folder's lock now, without taking it; None when no live process does."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file, or no folder at all: nobody holds it
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        return _holder(fd)
    finally:
        os.close(fd)  # closing drops a lock just taken
    return None


@contextmanager
def claiming(folder: Path, resume: str | None, ckpt_path: Any) -> Iterator[None]:
    """Check that the run may write into ``folder`` (``check_run_folder``) and hold its lock for the block: refused
    at once while another live process holds it. Done in the run's first process only: the other ranks of a DDP
    run write into the folder that process claimed."""
    if not launching_process():
        yield
        return
    check_run_folder(folder, resume, ckpt_path)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise _refusal(folder, _holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def reroot(value: Any, old: str, new: str) -> Any:
    """``value`` (strings, and dicts and lists of them) with every path under ``old`` moved under ``new``."""
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old.rstrip(os.sep) + os.sep) else value
    if isinstance(value, dict):
        return {reroot(k, old, new): reroot(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(reroot(v, old, new) for v in value)
    return value


def reroot_checkpoint(checkpoint: dict[str, Any], run_config: dict | None) -> None:
    """Point a resumed checkpoint's callback states (best and last checkpoint paths) at the folder being resumed,
    when the run folder was copied or moved since the checkpoint was saved. Lightning would otherwise keep
    tracking the original folder's files, or (on a changed ``dirpath``) forget the best checkpoint's score."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("run_config") or {}
    old = (saved.get("paths") or {}).get("output_dir")
    new = ((run_config or {}).get("paths") or {}).get("output_dir")
    if (run_config or {}).get("resume") and old and new and old != new and "callbacks" in checkpoint:
        checkpoint["callbacks"] = reroot(checkpoint["callbacks"], old, new)


class RunFolderCheck(HydraCallback):
    """Before Hydra writes into the run folder (``.hydra/``, the log file): refuse a run that would continue
    nothing, a new run in a folder that holds one, a folder another process is writing, and a folder that cannot
    be written; each in one line, with exit status 2."""

    def _refuse(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.run.dir)).absolute()
        launching = launching_process()
        if launching:
            try:
                if "resume" in config:  # alexnet-train's own settings: resume= and ckpt_path=last
                    check_run_folder(folder, config.get("resume"), config.get("ckpt_path"))
                elif holds_run(folder):
                    check_run_folder(folder, None, None)
            except UserError as error:
                self._refuse(str(error))
        self._check_writable(str(folder))
        if launching and (holder := lock_holder(folder)) is not None:
            self._refuse(str(_refusal(folder, holder)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check_writable(str(config.hydra.sweep.dir))

    def _check_writable(self, folder: str) -> None:
        try:
            probe_writable(Path(folder))
        except OSError as error:
            self._refuse(
                f"cannot write to the output folder {folder} ({error.strerror or error}). Point runs at a "
                "writable folder: paths.log_dir=/path (or ALEXNET_LOG_DIR=/path)."
            )


def probe_writable(folder: Path) -> None:
    """Create ``folder`` and write and delete a small file in it; raises the OSError that stops either."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".write_test"
    probe.write_bytes(b"0" * 4096)
    probe.unlink()


def latest_resumable_run(runs_dir: Path) -> Path | None:
    """The newest run folder (names sort by start time) holding ``checkpoints/last.ckpt``."""
    candidates = sorted(p.parent.parent for p in runs_dir.glob(f"*/{CHECKPOINTS}/{LAST}"))
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


def checkpoint_run_folder(ckpt_path: str | Path) -> Path:
    """The run folder a checkpoint belongs to: ``<run>/checkpoints/x.ckpt`` -> ``<run>``; elsewhere, its folder."""
    folder = Path(ckpt_path).expanduser().absolute().parent
    return folder.parent if folder.name == CHECKPOINTS else folder


def figures_dir(ckpt_path: str | None, fallback: str) -> str:
    """alexnet-figures writes into ``<run>/figures/``; without an existing checkpoint (the command then stops
    with a message) into ``fallback``, so that no folder is made next to a mistyped path."""
    if ckpt_path and Path(ckpt_path).expanduser().is_file():
        return str(checkpoint_run_folder(ckpt_path) / FIGURES)
    return fallback


# The resolvers conf/ uses to place a run's folder (train.yaml, figures.yaml): registered on import.
OmegaConf.register_new_resolver("alexnet.run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("alexnet.output_subdir", output_subdir, replace=True)
OmegaConf.register_new_resolver("alexnet.figures_dir", figures_dir, replace=True)
