"""alexnet-report on sweep folders: the table, the plot of a 16-job ablation, the paper's effects, broken files, and
a sweep with several seeds per configuration (mean ± spread, paired intervals, verdicts).

The readers of each logger's real files are tested on a real sweep in test_sweeps.py; here the metrics files are
written by hand so that every expected number is exact.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.container import BarContainer
from scipy import stats

from alexnet.analysis.comparisons import PairedEffect, paired_effect, verdict
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
    # every other two-valued setting too, with no paper number beside it (the feature side named first)
    assert "| two towers (`model.groups`: 2 vs 1) | 7 | - | +1.00 | - | +0.00 |" in text
    assert "| `model.input_size`: 227 vs 224 | 7 | - | +2.00 | - | +0.00 |" in text
    assert "Measured: test accuracy" in text
    # one seed per configuration: the single-run differences, and no interval
    assert "Each configuration ran with one seed, so **no interval can be given**" in text
    assert "95 % CI" not in text and "top-1 verdict" not in text and "mean ± standard deviation" not in text
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


SEEDS = (1, 2, 3, 4)
# Accuracy points each feature adds, per seed: chosen so that each verdict comes out once.
LRN_GAIN = {"top1": (1.2, 1.6, 1.4, 1.5), "top5": (0.1, 0.2, 0.15, 0.12)}  # consistent; smaller than the paper's
POOL_GAIN = {"top1": (2.0, 2.2, 1.9, 2.1), "top5": (-0.5, 0.6, 0.1, -0.2)}  # larger than the paper's; no effect


@pytest.fixture
def seeded_sweep(tmp_path: Path) -> tuple[Path, dict[tuple[str, str, int], tuple[float, float]]]:
    """model.lrn x model.overlapping_pool x seed=1,2,3,4: 16 jobs; job (lrn=false, pool=false, seed=4) failed. Returns
    the folder and each finished job's test (top-1, top-5) accuracy."""
    sweep = tmp_path / "2026-02-01_09-00-00"
    tested = {}
    for number, (lrn, pool, seed) in enumerate(itertools.product(("true", "false"), ("true", "false"), SEEDS)):
        overrides = [f"model.lrn={lrn}", f"model.overlapping_pool={pool}", f"seed={seed}"]
        if (lrn, pool, seed) == ("false", "false", 4):
            (sweep / str(number) / ".hydra").mkdir(parents=True)
            (sweep / str(number) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            continue
        i = SEEDS.index(seed)
        top1 = (
            60 + 3 * i + (LRN_GAIN["top1"][i] if lrn == "true" else 0) + (POOL_GAIN["top1"][i] if pool == "true" else 0)
        )
        top5 = 80 + i + (LRN_GAIN["top5"][i] if lrn == "true" else 0) + (POOL_GAIN["top5"][i] if pool == "true" else 0)
        tested[(lrn, pool, seed)] = (top1 / 100, top5 / 100)
        write_job(sweep / str(number), overrides, [(top1 / 100 - 0.02, top5 / 100 - 0.01)], (top1 / 100, top5 / 100))
    return sweep, tested


def table_rows(text: str, header_start: str) -> dict[str, list[str]]:
    """The rows of the Markdown table whose header starts with ``header_start``, by first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = line.strip("| ").split(" | ")
        rows[cells[0]] = cells
    return rows


def expected_effect(tested: dict, key: int, feature: int) -> tuple[float, float, float]:
    """Mean paired difference (feature on - off, same seed and other setting) and SciPy's 95 % t interval."""
    differences = []
    for (lrn, pool, seed), values in tested.items():
        on = (lrn, pool)
        if on[feature] != "true":
            continue
        off = ("false", pool, seed) if feature == 0 else (lrn, "false", seed)
        if off in tested:
            differences.append(100 * (values[key] - tested[off][key]))
    mean = float(np.mean(differences))
    low, high = stats.t.interval(0.95, len(differences) - 1, loc=mean, scale=stats.sem(differences))
    return mean, float(low), float(high)


def test_a_seeded_sweep_gives_mean_and_spread_per_configuration_and_paired_intervals_with_verdicts(
    seeded_sweep: tuple[Path, dict],
) -> None:
    sweep, tested = seeded_sweep
    table, plot = report(sweep)
    text = table.read_text()
    configs = table_rows(text, "| configuration |")
    assert list(configs) == [  # best mean best-validation top-1 first
        "lrn=true overlapping_pool=true",
        "lrn=false overlapping_pool=true",
        "lrn=true overlapping_pool=false",
        "lrn=false overlapping_pool=false",
    ]
    for name, cells in configs.items():
        lrn, pool = (part.split("=")[1] for part in name.split())
        values = np.array([tested[(lrn, pool, seed)] for seed in SEEDS if (lrn, pool, seed) in tested]) * 100
        assert cells[1:3] == [str(len(values)), "1 2 3 4"]
        means, stds = values.mean(axis=0), values.std(axis=0, ddof=1)
        assert cells[7] == f"{means[0]:.2f} ± {stds[0]:.2f}", cells  # test top-1
        assert cells[8] == f"{means[1]:.2f} ± {stds[1]:.2f}", cells  # test top-5
        assert cells[3] == f"{means[0] - 2:.2f} ± {stds[0]:.2f}", cells  # val top-1: test - 2 points
    effects = table_rows(text, "| setting |")
    lrn_row, pool_row = (
        effects["local response normalisation (`model.lrn`)"],
        effects["overlapping pooling (`model.overlapping_pool`)"],
    )
    assert lrn_row[1] == pool_row[1] == "7", "8 pairs each, one lost with the failed job"
    for row, feature, verdicts in ((lrn_row, 0, ("consistent with the paper", "smaller than the paper's")),
                                   (pool_row, 1, ("larger than the paper's", "no effect detected"))):  # fmt: skip
        for key, (measured, said) in enumerate(((row[3], row[4]), (row[6], row[7]))):
            mean, low, high = expected_effect(tested, key, feature)
            assert measured == f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]", (row, key)
            assert said == verdicts[key], (row, key)
    assert lrn_row[2] == "1.4" and lrn_row[5] == "1.2" and pool_row[2] == "0.4" and pool_row[5] == "0.3"
    assert "Student's t interval of the mean paired difference" in text and "scipy.stats.ttest_rel" in text
    assert "no interval can be given" not in text
    # the jobs themselves, with their seeds
    assert "| 15 | false | false | 4 | - |" in text

    # The plot: a row per configuration, its mean with the standard deviation as an error bar.
    jobs = read_sweep(sweep)
    figure = bar_plot(jobs, varying_keys(jobs), "title")
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels == ["lrn=false overlapping_pool=false  (n=3)", "lrn=true overlapping_pool=false  (n=4)",
                      "lrn=false overlapping_pool=true  (n=4)", "lrn=true overlapping_pool=true  (n=4)"]  # fmt: skip
    top1_bars = next(c for c in figure.axes[0].containers if isinstance(c, BarContainer))
    half_widths = [(s[1][0] - s[0][0]) / 2 for s in top1_bars.errorbar.lines[2][0].get_segments()]
    best = {name: [100 * (v[0] - 0.02) for k, v in tested.items() if f"lrn={k[0]} overlapping_pool={k[1]}" == name]
            for name in configs}  # fmt: skip
    expected = [float(np.std(best[label.split("  ")[0]], ddof=1)) for label in labels]
    assert half_widths == pytest.approx(expected)
    assert_visible(plot)


def test_a_one_seed_sweep_draws_no_error_bars(ablation_sweep: Path) -> None:
    jobs = read_sweep(ablation_sweep)
    figure = bar_plot(jobs, varying_keys(jobs), "title")
    bars = [c for c in figure.axes[0].containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(container.errorbar is None for container in bars)


def test_the_interval_is_scipys_t_interval_and_the_verdicts_read_it_against_the_paper() -> None:
    on, off = [3.0, 4.5, 2.0, 3.5], [1.0, 1.5, 1.0, 1.0]
    effect = paired_effect(on, off)
    differences = np.subtract(on, off)
    low, high = stats.t.interval(0.95, 3, loc=differences.mean(), scale=stats.sem(differences))
    assert (effect.n, effect.mean) == (4, pytest.approx(2.125))
    assert (effect.low, effect.high) == pytest.approx((low, high))
    assert paired_effect(on, off, interval=False) == PairedEffect(4, pytest.approx(2.125))
    assert paired_effect([3.0], [1.0]) == PairedEffect(1, 2.0), "one pair: no interval"
    assert paired_effect([2.0, 3.0], [1.0, 2.0]) == PairedEffect(2, 1.0, 1.0, 1.0), "equal differences: no spread"
    cases = {(-0.5, 2.0): "no effect detected", (1.0, 2.0): "consistent with the paper",
             (0.2, 1.0): "smaller than the paper's", (1.5, 3.0): "larger than the paper's",
             (-2.0, -0.5): "opposite to the paper's"}  # fmt: skip
    for (low, high), said in cases.items():
        assert verdict(PairedEffect(5, (low + high) / 2, low, high), paper=1.4) == said
    assert verdict(PairedEffect(5, 1.0, 0.5, 1.5), paper=None) == "effect detected"
    assert verdict(PairedEffect(5, 1.0, -0.5, 1.5), paper=None) == "no effect detected"
    assert verdict(PairedEffect(1, 1.0), paper=1.4) == "no interval"
