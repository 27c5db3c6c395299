"""A CSV logger whose ``metrics.csv`` survives a resume and never waits to reach the disk.

Written on Lightning's public ``Logger`` base rather than by extending its ``CSVLogger``, because that one deletes an
existing ``metrics.csv`` when it starts (its writer removes the file it finds), so a resumed run would lose every
row logged before its checkpoint. Here a resumed run keeps the rows before its checkpoint's step and drops the
ones after it, and every row is appended and flushed as it is logged (``CSVLogger`` buffers them, 100 steps by
default, ``flush_logs_every_n_steps``), so a run stopped by a signal keeps the rows it logged.
"""

from __future__ import annotations

import csv
import os
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from alexnet.errors import UserError

METRICS_FILE, HPARAMS_FILE = "metrics.csv", "hparams.yaml"


class ResumableCSVLogger(Logger):
    """Rows of ``step``, ``epoch`` and the metrics in ``<save_dir>/<name>/<version>/metrics.csv``.

    Args:
        save_dir: the run folder.
        name: sub-folder of the CSV files.
        version: a further sub-folder ("" for none).

    ``resume_step``: set when a run resumes from a checkpoint of that step; the rows logged at or after it (by
    the process that was stopped, after its checkpoint) are dropped, the rows before it kept.
    """

    def __init__(self, save_dir: str, name: str = "csv", version: str = "") -> None:
        super().__init__()
        self._save_dir, self._name, self._version = str(save_dir), name, version
        self.resume_step: int | None = None
        self._keys: list[str] | None = None  # the file's header, once the file is open

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self._save_dir, self._name)

    @property
    def log_dir(self) -> str:
        return os.path.join(self.root_dir, self._version) if self._version else self.root_dir

    @property
    def metrics_file(self) -> Path:
        return Path(self.log_dir) / METRICS_FILE

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        save_hparams_to_yaml(Path(self.log_dir) / HPARAMS_FILE, params)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float | torch.Tensor], step: int | None = None) -> None:
        row = {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}
        row["step"] = step if step is not None else 0
        try:
            if self._keys is None:
                self._start()
            assert self._keys is not None
            if not set(row) <= set(self._keys):
                self._rewrite(sorted(set(self._keys) | set(row)), self._read())
            # "r+", not "a": an append would create the file again in a folder made anew by someone else
            with self.metrics_file.open("r+", newline="") as file:
                file.seek(0, os.SEEK_END)
                csv.DictWriter(file, fieldnames=self._keys).writerow(row)
                file.flush()
        except OSError as error:
            where = "the run folder was removed or moved" if not self.metrics_file.parent.is_dir() else error.strerror
            raise UserError(
                f"Cannot write {self.metrics_file} ({where or error}); the run stops. Restore the folder, then "
                f"continue with: alexnet-train resume={self._save_dir}"
            ) from error

    def _read(self) -> list[dict[str, str]]:
        if not self.metrics_file.is_file():
            return []
        with self.metrics_file.open(newline="") as file:
            return list(csv.DictReader(file))

    def _start(self) -> None:
        """A new file, or, on resume, the rows logged before the checkpoint's step."""
        self.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        kept: list[dict[str, str]] = []
        if self.resume_step is not None:
            kept = [row for row in self._read() if row.get("step") and int(row["step"]) < self.resume_step]
        self._rewrite(sorted({key for row in kept for key in row}), kept)

    def _rewrite(self, keys: list[str], rows: list[dict[str, Any]]) -> None:
        """The whole file with a new header; written aside and renamed, so a kill never leaves half a file."""
        partial = self.metrics_file.with_name(f".{METRICS_FILE}.partial")
        with partial.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(partial, self.metrics_file)
        self._keys = keys
