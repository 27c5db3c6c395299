"""A run's logged metrics, read back from the files its loggers wrote in the run folder.

- ``csv/metrics.csv``: Lightning's CSV logger, one row per logging call (``step``, ``epoch``, metric columns).
- ``tensorboard/events.out.tfevents.*``: read with TensorBoard's own ``EventAccumulator``.
- W&B: an offline run writes no summary or history file a program can read, only ``run-<id>.wandb``, a log of
  W&B's private protobuf records (wandb-core reads it; wandb's Python package has no reader). So
  ``logger=wandb`` keeps ``csv/metrics.csv`` as well (``conf/logger/wandb.yaml``), and that is what is read.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from alexnet.errors import UserError

CSV_FILE = Path("csv") / "metrics.csv"
TENSORBOARD_FOLDER = Path("tensorboard")


@dataclass(frozen=True)
class Point:
    step: int
    epoch: int | None  # None for values logged outside an epoch's metrics (the learning-rate monitor's)
    value: float


@dataclass
class RunMetrics:
    """Every logged value of every metric, in logging order."""

    source: Path  # the file or folder read
    series: dict[str, list[Point]]

    @property
    def logger(self) -> str:
        return "tensorboard" if self.source.name == TENSORBOARD_FOLDER.name else "csv"

    def last(self, name: str) -> float | None:
        points = self.series.get(name)
        return points[-1].value if points else None

    def best(self, name: str) -> float | None:
        points = self.series.get(name)
        return max(p.value for p in points) if points else None

    def per_epoch(self, name: str) -> list[tuple[int, float]]:
        """(epoch, value) for an epoch-level metric such as ``val/acc_top1``, the last value of each epoch."""
        by_epoch = {p.epoch: p.value for p in self.series.get(name, []) if p.epoch is not None}
        return sorted(by_epoch.items())

    def epochs(self) -> int:
        """Training epochs that ended with a validation."""
        validated = [p.epoch for p in self.series.get("val/loss", []) if p.epoch is not None]
        return max(validated) + 1 if validated else 0

    def learning_rate_changes(self) -> list[tuple[int, float, float]]:
        """(epochs completed before the change, old rate, new rate) for every change of the logged learning
        rate (Lightning's LearningRateMonitor: ``lr-<Optimizer>``, logged at the start of each epoch)."""
        names = sorted(n for n in self.series if n.startswith("lr-"))
        if not names:
            return []
        validation_steps = sorted(p.step for p in self.series.get("val/loss", []))
        changes = []
        points = self.series[names[0]]
        for before, after in zip(points, points[1:], strict=False):
            if after.value != before.value:
                completed = sum(1 for step in validation_steps if step <= after.step)
                changes.append((completed, before.value, after.value))
        return changes


def read_run_metrics(run_dir: Path) -> RunMetrics | None:
    """The metrics of the run in ``run_dir``, from its CSV file or else its TensorBoard events; None when the run
    kept neither (``logger=none``, or W&B with ``~logger.csv``)."""
    if (run_dir / CSV_FILE).is_file():
        return read_csv_metrics(run_dir / CSV_FILE)
    folder = run_dir / TENSORBOARD_FOLDER
    if folder.is_dir() and any(folder.glob("events.out.tfevents.*")):
        return read_tensorboard_metrics(folder)
    return None


def _unreadable(path: Path, error: Exception) -> UserError:
    reason = " ".join(str(error).split())[:200]
    return UserError(
        f"{path} is not a readable metrics file ({type(error).__name__}: {reason}). Restore it, or delete it "
        "(or its run folder) and run again."
    )


def read_csv_metrics(path: Path) -> RunMetrics:
    series: dict[str, list[Point]] = defaultdict(list)
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if not reader.fieldnames or "step" not in reader.fieldnames:
                raise ValueError("no 'step' column in its header")
            for row in reader:
                if None in row:  # more cells than header names
                    raise ValueError(f"row {reader.line_num} has more cells than the header")
                step = int(float(row["step"]))
                epoch = int(float(row["epoch"])) if row.get("epoch") else None
                for name, cell in row.items():
                    if name not in ("step", "epoch") and cell:
                        series[name].append(Point(step, epoch, float(cell)))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as error:
        raise _unreadable(path, error) from error
    return RunMetrics(path, dict(series))


def read_tensorboard_metrics(folder: Path) -> RunMetrics:
    """Scalars of every event file in ``folder`` (TensorBoard drops the steps a resumed run rewrote). Lightning
    logs ``epoch`` with each call; a value's epoch is the smallest ``epoch`` logged at its step, because an
    epoch's metrics are logged at its last step, where nothing of a later epoch has been logged yet."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    try:
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every value
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        scalars = {tag: accumulator.Scalars(tag) for tag in tags}
    except Exception as error:  # the reader raises its own error types for corrupt records
        raise _unreadable(folder, error) from error
    if not scalars:
        raise _unreadable(folder, ValueError("no scalar values in its event files"))
    epoch_at: dict[int, int] = {}
    for event in scalars.pop("epoch", []):
        epoch_at[event.step] = min(epoch_at.get(event.step, int(event.value)), int(event.value))
    series = {
        tag: [Point(e.step, None if tag.startswith("lr-") else epoch_at.get(e.step), e.value) for e in events]
        for tag, events in scalars.items()
    }
    return RunMetrics(folder, series)
