"""alexnet-report on sweep folders: the table, the plot of a 16-job ablation, the paper's effects, broken files.

The readers of each logger's real files are tested on a real sweep in test_sweeps.py; here the metrics files are
written by hand so that every expected number is exact.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
import yaml

from alexnet.analysis.sweep_report import bar_plot, read_sweep, report, varying_keys
from alexnet.errors import UserError
from conftest import assert_visible, compose_config

ABLATION = {"model.lrn": ("true", "false"), "model.groups": ("1", "2"), "model.input_size": ("224", "227"),
            "model.overlapping_pool": ("true", "false")}  # fmt: skip


def write_job(folder: Path, overrides: list[str], epochs: list[tuple[float, float]], test: tuple[float, float] | None):
    """A job folder as alexnet-train writes it: Hydra's overrides and Lightning's CSV rows (val per epoch, test)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "csv").mkdir()
    names = ["epoch", "step", "val/loss", "val/acc_top1", "val/acc_top5", "test/acc_top1", "test/acc_top5"]
    with (folder / "csv" / "metrics.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=names)
        writer.writeheader()
        for epoch, (top1, top5) in enumerate(epochs):
            writer.writerow({"epoch": epoch, "step": 10 * epoch + 9, "val/loss": 1.0, "val/acc_top1": top1,
                             "val/acc_top5": top5})  # fmt: skip
        if test:
            writer.writerow({"epoch": len(epochs), "step": 10 * len(epochs), "test/acc_top1": test[0],
                             "test/acc_top5": test[1]})  # fmt: skip


@pytest.fixture
def ablation_sweep(tmp_path: Path) -> Path:
    """The 16 jobs of experiment=ablation_fashion_mnist. LRN adds 2 points of top-1 and 1 of top-5 accuracy,
    overlapping pooling 0.5 and 0.25; job 15 failed before validating."""
    sweep = tmp_path / "2026-01-31_12-00-00"
    for number, values in enumerate(itertools.product(*ABLATION.values())):
        settings = dict(zip(ABLATION, values, strict=True))
        overrides = ["experiment=ablation_fashion_mnist", *(f"{k}={v}" for k, v in settings.items())]
        if number == 15:
            (sweep / "15" / ".hydra").mkdir(parents=True)
            (sweep / "15" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            continue
        top1 = (
            0.6
            + (0.01 if settings["model.groups"] == "2" else 0)
            + (0.02 if settings["model.input_size"] == "227" else 0)
        )
        top1 += (0.02 if settings["model.lrn"] == "true" else 0) + (
            0.005 if settings["model.overlapping_pool"] == "true" else 0
        )
        top5 = 0.8 + (0.01 if settings["model.lrn"] == "true" else 0)
        top5 += 0.0025 if settings["model.overlapping_pool"] == "true" else 0
        # two epochs: the first has the best top-1, the second the final values
        epochs = [(top1, top5 - 0.1), (top1 - 0.05, top5)]
        write_job(sweep / str(number), overrides, epochs, (top1 + 0.001, top5 + 0.001))
    return sweep


def test_ablation_report_gives_each_job_and_the_paper_effects_beside_the_measured_ones(ablation_sweep: Path) -> None:
    table, plot = report(ablation_sweep)
    text = table.read_text()
    assert "Common to every job: experiment=ablation_fashion_mnist" in text
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| 0 |")]
    # job 0: lrn, groups 1, 224, overlapping: top-1 0.6 + 0.02 + 0.005
    assert rows == [["0", "1", "224", "true", "true", "57.50", "62.50", "81.25", "81.25", "62.60", "81.35", "2", "csv"]]
    assert "| 15 | 2 | 227 | false | false | - | - | - | - | - | - | - | no metrics file |" in text
    assert "Jobs without a validation result (failed, unfinished or no metrics file): [15]" in text
    # 8 pairs for LRN, one lost with job 15; the same for pooling. Measured on test accuracy.
    assert "| local response normalisation (`model.lrn`) | 7 | 1.4 | +2.00 | 1.2 | +1.00 |" in text
    assert "| overlapping pooling (`model.overlapping_pool`) | 7 | 0.4 | +0.50 | 0.3 | +0.25 |" in text
    assert "Measured: test accuracy" in text
    assert_visible(plot)


def test_the_plot_of_a_sixteen_job_sweep_names_every_job_by_its_settings(ablation_sweep: Path) -> None:
    (ablation_sweep / "15" / ".hydra" / "overrides.yaml").unlink()  # 15 jobs with results
    jobs = read_sweep(ablation_sweep)
    keys = varying_keys(jobs)
    assert keys == ["model.groups", "model.input_size", "model.lrn", "model.overlapping_pool"]
    figure = bar_plot(jobs, keys, "title")
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert len(set(labels)) == 15 and all(label.count("=") == 4 for label in labels)
    assert labels[-1] == "#6  groups=2 input_size=227 lrn=true overlapping_pool=true", "the best job on top"
    assert figure.get_figheight() >= 0.4 * 15, "a row per job, tall enough to read"


def test_a_broken_metrics_file_is_one_message(tmp_path: Path) -> None:
    write_job(tmp_path / "0", ["model.lrn=true"], [(0.5, 0.9)], None)
    (tmp_path / "0" / "csv" / "metrics.csv").write_bytes(b"epoch,step,val/acc_top1\n0,9,\xff\xfe0.5\n")
    with pytest.raises(UserError, match=r"metrics.csv is not a readable metrics file \(UnicodeDecodeError"):
        report(tmp_path)
    (tmp_path / "0" / "csv" / "metrics.csv").write_text("epoch,step,val/acc_top1\n0,9,half\n")
    with pytest.raises(UserError, match="could not convert string to float"):
        report(tmp_path)


def test_wandb_keeps_a_local_metrics_file_for_the_report() -> None:
    assert list(compose_config("train", ["logger=wandb"]).logger) == ["csv", "wandb"]
    assert list(compose_config("train", ["logger=[csv,wandb]"]).logger) == ["csv", "wandb"]
    assert list(compose_config("train", ["logger=wandb", "~logger.csv"]).logger) == ["wandb"]
    assert list(compose_config("train", ["logger=tensorboard"]).logger) == ["tensorboard"]
