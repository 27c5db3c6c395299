"""What ``alexnet-report outputs/multirun/<date>`` writes: a finished sweep as a Markdown table and a PNG bar
plot of each configuration's final top-1/top-5, read from the job folders (no W&B needed)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import yaml

from alexnet.errors import UserError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = ("val/acc_top1", "val/acc_top5", "test/acc_top1", "test/acc_top5")


@dataclass
class Job:
    number: int
    overrides: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return "val/acc_top1" in self.metrics


def read_job(folder: Path) -> Job | None:
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        return None
    overrides = dict(o.split("=", 1) for o in yaml.safe_load(overrides_file.read_text()) or [] if "=" in o)
    job = Job(int(folder.name), {k.lstrip("+~"): v for k, v in overrides.items()})
    metrics_file = folder / "csv" / "metrics.csv"
    if metrics_file.is_file():
        with metrics_file.open(newline="") as file:
            for row in csv.DictReader(file):
                for name in METRICS:
                    if row.get(name):
                        job.metrics[name] = float(row[name])  # the last value logged is the final one
    return job


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


def markdown_table(jobs: list[Job], keys: list[str]) -> str:
    shown = [m for m in METRICS if any(m in job.metrics for job in jobs)]
    header = ["job", *keys, *shown]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ranked = sorted(jobs, key=lambda j: -j.metrics.get("val/acc_top1", -1.0))
    for job in ranked:
        values = [f"{100 * job.metrics[m]:.2f}" if m in job.metrics else "failed" for m in shown]
        lines.append("| " + " | ".join([str(job.number), *(job.overrides.get(k, "-") for k in keys), *values]) + " |")
    return "\n".join(lines) + "\n"


def bar_plot(jobs: list[Job], keys: list[str], path: Path) -> None:
    finished = [job for job in jobs if job.finished]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(finished) + 2), 5))
    width = 0.4
    positions = range(len(finished))
    for offset, metric in ((-width / 2, "val/acc_top1"), (width / 2, "val/acc_top5")):
        values = [100 * job.metrics.get(metric, 0.0) for job in finished]
        axes.bar([p + offset for p in positions], values, width, label=metric.split("/")[-1].replace("acc_", ""))
    axes.set_xticks(list(positions), [label(job, keys) for job in finished], rotation=60, ha="right", fontsize=8)
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(f"final validation top-1 / top-5 per configuration\n{path.parent}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def report(folder: Path) -> tuple[Path, Path]:
    jobs = read_sweep(folder)
    keys = varying_keys(jobs)
    table, plot = folder / "report.md", folder / "report.png"
    failed = [job.number for job in jobs if not job.finished]
    note = f"\nJobs without a validation result (failed or unfinished): {failed}\n" if failed else ""
    table.write_text(f"# {folder.name}: {len(jobs)} jobs, accuracy in %\n\n" + markdown_table(jobs, keys) + note)
    bar_plot(jobs, keys, plot)
    return table, plot
