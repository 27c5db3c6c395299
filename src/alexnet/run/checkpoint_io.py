"""Checkpoints written whole or not at all, sealed with a checksum of their content, and checked when read."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import TorchCheckpointIO

from alexnet.errors import UserError
from alexnet.models.checkpoint_files import intact_checkpoints, load_checked, seal
from alexnet.run.resume_point import LAST, PENDING


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place: a run killed mid-write (SIGKILL,
    out of memory, node failure) leaves the previous ``last.ckpt`` intact instead of a truncated one. Each is
    sealed with a checksum of its content first (``alexnet.models.checkpoint_files``), and every checkpoint
    Lightning reads back through here (``resume=``, the best checkpoint for the test) is checked against it.

    A write that fails (a full disk, the run folder removed, a folder made read-only) leaves no partial file and
    ends the run with one message naming the last intact checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self._written: set[Path] = set()  # folders this run has saved into

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        seal(checkpoint)
        if path.parent in self._written and not path.parent.is_dir():  # Lightning would make it anew, holding only this
            raise _unsaved(path, FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent)))
        try:
            super().save_checkpoint(checkpoint, partial, storage_options)
            os.replace(partial, path)
            self._written.add(path.parent)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise _unsaved(path, error) from error

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return load_checked(path)


def _unsaved(path: Path, error: OSError) -> UserError:
    if path.name == PENDING:  # last.ckpt's successor, written aside first (resume_point)
        path = path.with_name(LAST)
    intact = intact_checkpoints(path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
    last = ", ".join(f"{p} (step {step})" for p, step in intact) or "none"
    if error.errno == errno.ENOSPC:
        why = f"the disk is full ({path.parent})"
        fix = "Free some space, then continue"
    elif not path.parent.is_dir():
        why = f"its folder {path.parent} no longer exists (was the run folder removed or moved?)"
        fix = "Put the run folder back, then continue"
    else:
        why = f"{error.strerror or error} ({path.parent})"
        fix = "Make the folder writable, then continue"
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return UserError(
        f"Cannot save the checkpoint {path}: {why}. Nothing partial was left; intact checkpoints: {last}. {fix} "
        f"with: alexnet-train resume={run}"
    )
