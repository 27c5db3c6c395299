"""The CSV log: every row on disk as soon as it is logged, new metrics widen the file, a resume keeps the rows
before its checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from alexnet.run.metrics_csv import ResumableCSVLogger
from conftest import read_metrics


def test_rows_reach_the_file_as_they_are_logged_and_new_keys_widen_it(tmp_path: Path) -> None:
    logger = ResumableCSVLogger(str(tmp_path), name="csv")
    logger.log_metrics({"train/loss": torch.tensor(2.5), "epoch": 0}, step=0)
    assert read_metrics(tmp_path / "csv" / "metrics.csv") == [{"epoch": "0", "step": "0", "train/loss": "2.5"}]
    logger.log_metrics({"val/acc_top1": 0.25, "epoch": 0}, step=1)
    rows = read_metrics(tmp_path / "csv" / "metrics.csv")
    assert rows == [
        {"epoch": "0", "step": "0", "train/loss": "2.5", "val/acc_top1": ""},
        {"epoch": "0", "step": "1", "train/loss": "", "val/acc_top1": "0.25"},
    ]
    logger.log_hyperparams({"lr": 0.01})
    assert "lr: 0.01" in (tmp_path / "csv" / "hparams.yaml").read_text()


def test_a_resumed_log_keeps_the_rows_before_the_checkpoint_step(tmp_path: Path) -> None:
    first = ResumableCSVLogger(str(tmp_path))
    for step in range(6):
        first.log_metrics({"train/loss": float(step)}, step=step)
    resumed = ResumableCSVLogger(str(tmp_path))
    resumed.resume_step = 4  # the checkpoint was saved after step 4; rows 4 and 5 came after it
    resumed.log_metrics({"train/loss": 40.0}, step=4)
    rows = read_metrics(tmp_path / "csv" / "metrics.csv")
    assert [(r["step"], r["train/loss"]) for r in rows] == [("0", "0.0"), ("1", "1.0"), ("2", "2.0"),
                                                            ("3", "3.0"), ("4", "40.0")]  # fmt: skip


def test_a_new_run_starts_an_empty_log(tmp_path: Path) -> None:
    ResumableCSVLogger(str(tmp_path)).log_metrics({"a": 1.0}, step=0)
    ResumableCSVLogger(str(tmp_path)).log_metrics({"b": 2.0}, step=0)
    assert read_metrics(tmp_path / "csv" / "metrics.csv") == [{"b": "2.0", "step": "0"}]
