"""alexnet-report's logic: a finished sweep as a Markdown table, a bar plot, and, for the paper's ablations, the
paper's published effects beside the measured ones. Reads each job folder's own logger files (CSV or
TensorBoard; W&B runs keep a CSV file too, see ``alexnet.run_metrics``), so no W&B account is needed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import yaml

from alexnet.analysis.run_metrics import RunMetrics, read_run_metrics
from alexnet.errors import UserError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Krizhevsky et al. (2012), sections 3.3 and 3.4: top-1 / top-5 error lowered by each feature, in points.
PAPER_EFFECTS = {
    "model.lrn": ("local response normalisation", 1.4, 1.2),
    "model.overlapping_pool": ("overlapping pooling", 0.4, 0.3),
}
COLUMNS = (  # (heading, metric, how)
    ("val top-1", "val/acc_top1", "last"),
    ("best val top-1", "val/acc_top1", "best"),
    ("val top-5", "val/acc_top5", "last"),
    ("best val top-5", "val/acc_top5", "best"),
    ("test top-1", "test/acc_top1", "last"),
    ("test top-5", "test/acc_top5", "last"),
)


@dataclass
class Job:
    number: int
    overrides: dict[str, str]
    metrics: RunMetrics | None

    def value(self, metric: str, how: str) -> float | None:
        if self.metrics is None:
            return None
        return self.metrics.best(metric) if how == "best" else self.metrics.last(metric)

    @property
    def finished(self) -> bool:
        return self.value("val/acc_top1", "last") is not None


def read_job(folder: Path) -> Job | None:
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        return None
    try:
        typed = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) or []
        overrides = dict(str(o).split("=", 1) for o in typed if "=" in str(o))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError) as error:
        raise UserError(f"{overrides_file} is not Hydra's list of overrides ({type(error).__name__}).") from error
    return Job(int(folder.name), {k.lstrip("+~"): v for k, v in overrides.items()}, read_run_metrics(folder))


def read_sweep(folder: Path) -> list[Job]:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder. Give a multirun folder, e.g. outputs/multirun/2026-01-31_12-00-00.")
    jobs = [job for sub in folder.iterdir() if sub.name.isdigit() and (job := read_job(sub)) is not None]
    if not jobs:
        raise UserError(f"{folder} holds no job folders (<n>/.hydra/overrides.yaml): is it an alexnet-train -m folder?")
    return sorted(jobs, key=lambda j: j.number)


def varying_keys(jobs: list[Job]) -> list[str]:
    """The overrides that tell the jobs apart (the swept ones), in a stable order."""
    keys = sorted({k for job in jobs for k in job.overrides})
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1] or keys


def label(job: Job, keys: list[str]) -> str:
    return " ".join(f"{k.split('.')[-1]}={job.overrides.get(k, '-')}" for k in keys)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def ranked(jobs: list[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (-(j.value("val/acc_top1", "best") or -1.0), j.number))


def markdown_table(jobs: list[Job], keys: list[str]) -> str:
    header = ["job", *keys, *(heading for heading, _, _ in COLUMNS), "epochs", "read from"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for job in ranked(jobs):
        values = [percent(job.value(metric, how)) for _, metric, how in COLUMNS]
        epochs = str(job.metrics.epochs()) if job.metrics else "-"
        source = job.metrics.logger if job.metrics else "no metrics file"
        cells = [str(job.number), *(job.overrides.get(k, "-") for k in keys), *values, epochs, source]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _switch(value: str | None) -> bool | None:
    parsed = yaml.safe_load(value) if value is not None else None
    return parsed if isinstance(parsed, bool) else None


def paper_effects(jobs: list[Job], keys: list[str]) -> str:
    """For each paper ablation swept (``model.lrn``, ``model.overlapping_pool``), the top-1 and top-5 error it
    lowers, measured as the mean over pairs of finished jobs that differ only in that switch, beside the
    paper's numbers. Test accuracy (each job's best checkpoint) when every paired job has it, else the best
    validation accuracy."""
    rows = []
    uses_test = all(job.value("test/acc_top1", "last") is not None for job in jobs if job.finished)
    top1, top5 = ("test/acc_top1", "test/acc_top5") if uses_test else ("val/acc_top1", "val/acc_top5")
    how = "last" if uses_test else "best"
    for key, (name, paper1, paper5) in PAPER_EFFECTS.items():
        if key not in keys:
            continue
        groups: dict[tuple, dict[bool, Job]] = defaultdict(dict)
        for job in jobs:
            switch = _switch(job.overrides.get(key))
            if switch is None or not job.finished:
                continue
            others = tuple(sorted((k, v) for k, v in job.overrides.items() if k != key))
            groups[others][switch] = job
        pairs = [(g[True], g[False]) for g in groups.values() if len(g) == 2]
        if not pairs:
            rows.append(f"| {name} (`{key}`) | 0 | {paper1} | - | {paper5} | - |")
            continue

        def lowered(metric: str, pairs: list[tuple[Job, Job]] = pairs) -> str:
            gains = [100 * (on.value(metric, how) - off.value(metric, how)) for on, off in pairs]
            return f"{sum(gains) / len(gains):+.2f}"

        rows.append(f"| {name} (`{key}`) | {len(pairs)} | {paper1} | {lowered(top1)} | {paper5} | {lowered(top5)} |")
    if not rows:
        return ""
    measured_on = "test accuracy" if uses_test else "best validation accuracy"
    return (
        "\n## The paper's ablations beside this sweep\n\n"
        "Top-1 / top-5 error lowered by each feature, in percentage points (positive: the feature helps). Measured: "
        f"{measured_on}, mean over the pairs of jobs that differ only in that setting. The paper's numbers are "
        "ILSVRC-2012 error after about 90 epochs; a short or Fashion-MNIST run is not expected to match them.\n\n"
        "| feature | pairs | top-1 paper | top-1 measured | top-5 paper | top-5 measured |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def bar_plot(jobs: list[Job], keys: list[str], title: str) -> Figure:
    """Best validation top-1 and top-5 per job as horizontal bars, labelled with the job's settings: readable
    for a 16-job ablation sweep (one row per job, best at the top)."""
    finished = list(reversed([job for job in ranked(jobs) if job.finished]))
    height = 1.6 + 0.42 * max(len(finished), 1)
    figure, axes = plt.subplots(figsize=(9, height))
    thickness = 0.38
    for offset, metric, colour, name in (
        (thickness / 2, "val/acc_top1", "#1f77b4", "top-1"),
        (-thickness / 2, "val/acc_top5", "#9ecae1", "top-5"),
    ):
        values = [100 * (job.value(metric, "best") or 0.0) for job in finished]
        positions = [i + offset for i in range(len(finished))]
        bars = axes.barh(positions, values, thickness, color=colour, label=name)
        axes.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    axes.set_yticks(range(len(finished)), [f"#{job.number}  {label(job, keys)}" for job in finished], fontsize=8)
    axes.set_xlim(0, 109)
    axes.set_xlabel("validation accuracy (%)")
    axes.set_title(title, fontsize=9, loc="right")
    if finished:  # above the bars, where no bar or value can be under it
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=2, fontsize=8, frameon=False)
    else:
        axes.text(50, 0, "no job has a validation result yet", ha="center", va="center")
    figure.tight_layout()
    return figure


def report(folder: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.png`` into the sweep folder."""
    jobs = read_sweep(folder)
    keys = varying_keys(jobs)
    common = sorted({f"{k}={v}" for job in jobs for k, v in job.overrides.items() if k not in keys})
    table, plot = folder / "report.md", folder / "report.png"
    failed = [job.number for job in jobs if not job.finished]
    lines = [
        f"# {folder.name}: {len(jobs)} jobs, accuracy in %\n",
        f"Common to every job: {' '.join(common)}\n" if common else "",
        markdown_table(jobs, keys),
        f"\nJobs without a validation result (failed, unfinished or no metrics file): {failed}\n" if failed else "",
        paper_effects(jobs, keys),
    ]
    table.write_text("\n".join(line for line in lines if line))
    figure = bar_plot(jobs, keys, f"best validation top-1 / top-5 per configuration: {folder.name}")
    figure.savefig(plot, dpi=100)
    plt.close(figure)
    return table, plot
