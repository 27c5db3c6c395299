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
import json
import logging
import os
import shutil
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
DATA_SPLIT = "data_split.json"
LOCK_FILE = ".lock"
CHECKPOINTS, LAST = "checkpoints", "last.ckpt"
FIGURES = "figures"
EXPORT = "export"  # alexnet-export's files
# Set in every process of a multi-process run but its first: Lightning's ddp sets LOCAL_RANK (and NODE_RANK) in
# the ranks it starts, torchrun sets RANK, SLURM sets SLURM_PROCID in every task.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def write_data_split(folder: Path, record: dict[str, Any]) -> None:
    """``<folder>/data_split.json``: the images a run held out for validation (whole, through a renamed temporary
    file). The checkpoints carry the same split; this copy is for people and other tools, never read back."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{DATA_SPLIT}.partial"
    partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, folder / DATA_SPLIT)


def holds_run(folder: Path) -> bool:
    return (folder / RUN_RECORD).is_file()


AUTO = "auto"  # resume=auto: continue the run in this folder if it has a resume point, else start one there


def resolve_auto(resume: str | None, folder: Path) -> str | None:
    """``resume=auto`` made definite for ``folder``: the folder (continue it) once it holds ``checkpoints/last.ckpt``,
    else None (start a run there, replacing a record that died before its first checkpoint)."""
    if resume != AUTO:
        return resume
    return str(folder) if (folder / CHECKPOINTS / LAST).is_file() else None


def slurm_job_id() -> str | None:
    """The SLURM job (``<array job>_<task>`` for an array) this process runs in, as Lightning names it; None outside."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return str(SLURMEnvironment.job_id()) if os.environ.get("SLURM_JOB_ID") else None


def continues_run(resume: str | None, ckpt_path: Any) -> bool:
    """``resume=<folder>`` and ``ckpt_path=last`` continue a run in its own folder; anything else starts one."""
    return bool(resume) or ckpt_path == "last"


def launching_process() -> bool:
    """The first process of a run, the one that owns its folder (the other ranks of a DDP run share it)."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def check_run_folder(folder: Path, resume: str | None, ckpt_path: Any) -> None:
    """A run continues only a folder that holds one, and starts only in a folder that holds none (``resume=auto``:
    or one whose run died before its first checkpoint)."""
    if resume == AUTO:
        resume = resolve_auto(resume, folder)
        if resume is None:
            return
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


class Claim:
    """A run folder claimed for one run: locked while the run's checks run, recorded as written only once they pass.

    ``begin`` marks the moment the run starts writing (its lock file names it, its config follows). A claim that
    ends without ``begin`` leaves the folder as it found it: a lock file it created is removed, and a folder that was
    empty when claimed (Hydra made it for this run) is removed with what the run's checks made in it.
    """

    def __init__(self, folder: Path, fd: int | None, created_lock: bool, was_empty: bool, lock: bool) -> None:
        self.folder, self._fd, self._created_lock, self._was_empty = folder, fd, created_lock, was_empty
        self.lock, self.begun = lock, False

    def begin(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self.begun = True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
        if self.begun:
            return
        if self._was_empty and self.folder.is_dir():
            shutil.rmtree(self.folder)  # empty when claimed: everything in it was made by this run's checks
        elif self._created_lock:
            (self.folder / LOCK_FILE).unlink(missing_ok=True)


def _take_lock(folder: Path) -> tuple[int, bool]:
    """The folder's lock file, opened and exclusively locked (it is created if missing): (fd, whether created)."""
    path = folder / LOCK_FILE
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _holder(fd) if error.errno in (errno.EACCES, errno.EAGAIN) else None
        os.close(fd)
        if created:
            path.unlink(missing_ok=True)
        if holder is not None:
            raise _refusal(folder, holder) from None
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise UserError(
                f"The filesystem of {folder} does not support POSIX record locks ({error.strerror}), which keep a "
                "second process out of a run folder. Put runs on a local or lock-capable filesystem "
                "(paths.log_dir=/path), or run without the lock: lock=false (then make sure that only one process "
                "writes each run folder)."
            ) from error
        raise
    return fd, created


@contextmanager
def claiming(folder: Path, resume: str | None, ckpt_path: Any, lock: bool = True) -> Iterator[Claim]:
    """Check that the run may write into ``folder`` (``check_run_folder``) and hold its lock for the block: refused
    at once while another live process holds it. Done in the run's first process only: the other ranks of a DDP
    run write into the folder that process claimed. ``lock=false`` skips the lock (filesystems without POSIX
    locks). Until ``Claim.begin``, nothing in the folder changes (see ``Claim``)."""
    if not launching_process():
        claim = Claim(folder, None, False, False, lock)
        claim.begun = True  # another rank's folder: nothing of it to undo
        yield claim
        return
    check_run_folder(folder, resume, ckpt_path)
    was_empty = not folder.exists() or not any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, created = _take_lock(folder) if lock else (None, False)
    claim = Claim(folder, fd, created, was_empty, lock)
    try:
        yield claim
    finally:
        claim.release()


def write_invocation(folder: Path, resumed: bool, composed: str, hydra_node: dict | None, overrides: list) -> None:
    """What Hydra records of a job, written by the run once its checks have passed (Hydra itself writes nothing
    into a run folder: ``conf/train.yaml`` sets ``hydra.output_subdir: null``): ``.hydra/config.yaml`` (the
    composed config), ``hydra.yaml`` and ``overrides.yaml``; a resume's own in ``.hydra/resumed_<time>/``."""
    record = folder / output_subdir("resume" if resumed else None, None)
    record.mkdir(parents=True, exist_ok=True)
    (record / "config.yaml").write_text(composed, encoding="utf-8")
    if hydra_node is not None:
        (record / "hydra.yaml").write_text(OmegaConf.to_yaml({"hydra": hydra_node}), encoding="utf-8")
    (record / "overrides.yaml").write_text(OmegaConf.to_yaml(list(overrides)), encoding="utf-8")


@contextmanager
def removed_if_left_empty(folder: str | None) -> Iterator[None]:
    """If the block fails and ``folder`` (not the working folder) is left empty, remove it."""
    try:
        yield
    except BaseException:
        path = Path(folder) if folder else None
        if path is not None and path.is_dir() and path.resolve() != Path.cwd().resolve() and not any(path.iterdir()):
            path.rmdir()
        raise


LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job log format


@contextmanager
def run_log(folder: Path, name: str | None) -> Iterator[None]:
    """``<folder>/<name>.log``: the console log of the run from here on (appended to on resume), as Hydra's job
    logging would write it, but only once the run's checks have passed. No file without a name."""
    if name is None:
        yield
        return
    handler = logging.FileHandler(folder / f"{name}.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


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
        # A sweep into a folder that holds one already would mix the two sweeps' records, and each job would land in
        # a folder holding another sweep's job: refused whole, before Hydra writes anything or any job starts.
        sweep = Path(str(config.hydra.sweep.dir)).absolute()
        if sweep.is_dir() and any(sweep.iterdir()):
            self._refuse(
                f"{sweep} already holds files (another sweep's jobs or multirun.yaml); a second sweep there would "
                "mix their records. Leave hydra.sweep.dir unset for a new folder, or give an empty one."
            )
        self._check_writable(str(sweep))

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
    """``resume=<folder>`` and ``ckpt_path=last`` continue a run in its own folder; anything else starts one.
    ``resume=auto`` inside a SLURM job: ``runs/slurm-<job id>``, the same folder when the job is requeued (elsewhere
    give the folder: ``hydra.run.dir=...``)."""
    if resume == AUTO:
        job = slurm_job_id()
        return str(Path(log_dir).absolute() / "runs" / f"slurm-{job}") if job else fresh
    if resume:
        return str(Path(resume).expanduser().absolute())
    if ckpt_path == "last" and (latest := latest_resumable_run(Path(log_dir) / "runs")) is not None:
        return str(latest.absolute())
    return fresh


def output_subdir(resume: str | None, ckpt_path: str | None) -> str:
    """A resumed run keeps its original ``.hydra/`` and records each restart's own in it, beside the first."""
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


def export_dir(ckpt_path: str | None, output: str | None, fallback: str) -> str:
    """alexnet-export writes into ``output`` if given, else ``<run>/export/`` beside the checkpoint's run folder;
    without an existing checkpoint (the command then stops with a message) into ``fallback``."""
    if isinstance(output, str) and output:
        return str(Path(output).expanduser().absolute())
    if isinstance(ckpt_path, str) and ckpt_path and Path(ckpt_path).expanduser().is_file():  # a list: refused later
        return str(checkpoint_run_folder(ckpt_path) / EXPORT)
    return fallback


# The resolvers conf/ uses to place a run's folder (train.yaml, figures.yaml): registered on import.
OmegaConf.register_new_resolver("alexnet.run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("alexnet.figures_dir", figures_dir, replace=True)
OmegaConf.register_new_resolver("alexnet.export_dir", export_dir, replace=True)
