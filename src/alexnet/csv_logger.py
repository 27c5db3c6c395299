"""A CSV logger whose ``metrics.csv`` survives a resume."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts. When a run resumes, this one
    keeps the rows logged before the checkpoint's step (``resume_step``) and appends the new ones after them,
    so one file tells the whole run; rows the killed process wrote after its checkpoint are dropped."""

    resume_step: int | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            kept = self._rows_before_resume()
            self._experiment = ExperimentWriter(log_dir=self.log_dir)  # deletes the old file
            if kept:
                keys = sorted({key for row in kept for key in row})
                with open(self._experiment.metrics_file_path, "w", newline="") as file:
                    writer = csv.DictWriter(file, fieldnames=keys)
                    writer.writeheader()
                    writer.writerows(kept)
                self._experiment.metrics_keys = keys
        return self._experiment

    def _rows_before_resume(self) -> list[dict[str, str]]:
        path = os.path.join(self.log_dir, ExperimentWriter.NAME_METRICS_FILE)
        if self.resume_step is None or not os.path.isfile(path):
            return []
        with open(path, newline="") as file:
            return [row for row in csv.DictReader(file) if row.get("step") and int(row["step"]) < self.resume_step]
