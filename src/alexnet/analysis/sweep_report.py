"""alexnet-report's logic: a finished sweep as Markdown tables, a bar plot, and the effect of each setting the sweep
switches (the paper's ablations among them) beside the paper's published effects.

Jobs that differ only in ``seed`` are one configuration run several times: the report gives each configuration's
mean and standard deviation over its seeds, and each switch's effect as the mean of paired differences (same seed,
the switch flipped, everything else equal) with a 95 % Student's t interval and a verdict (``comparisons``). With
one seed per configuration it gives the single-run differences and says that they have no interval.

Reads each job folder's own logger files (CSV or TensorBoard; W&B runs keep a CSV file too, see
``alexnet.analysis.run_metrics``), so no W&B account is needed."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import yaml

from alexnet.analysis.comparisons import METHOD, PairedEffect, Spread, paired_effect, spread, verdict
from alexnet.analysis.run_metrics import RunMetrics, read_run_metrics
from alexnet.errors import UserError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SEED = "seed"
# Krizhevsky et al. (2012), sections 3.3 and 3.4: top-1 / top-5 error lowered by each feature, in points.
PAPER_EFFECTS = {
    "model.lrn": ("local response normalisation", 1.4, 1.2),
    "model.overlapping_pool": ("overlapping pooling", 0.4, 0.3),
}
# Section 3.2's two-GPU net lowers top-1 / top-5 error by 1.7 / 1.2 points against a net with half as many kernels
# on one GPU, not against the same net ungrouped (model.groups=1): no paper number stands beside model.groups.
OTHER_NAMES = {"model.groups": "two towers"}
FEATURE_VALUE = {"model.groups": "2"}  # the side of a switch that is the feature, where neither true nor larger
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

    @property
    def configuration(self) -> tuple[tuple[str, str], ...]:
        """The job's settings without its seed: the jobs of one configuration differ only in their seed."""
        return tuple(sorted((k, v) for k, v in self.overrides.items() if k != SEED))


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


def seeded(jobs: list[Job]) -> bool:
    """Whether the sweep ran some configuration with more than one seed."""
    seeds: dict[tuple, set] = defaultdict(set)
    for job in jobs:
        seeds[job.configuration].add(job.overrides.get(SEED))
    return any(len(s) > 1 for s in seeds.values())


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


@dataclass
class Configuration:
    """The jobs of one configuration (the same settings, one job per seed)."""

    jobs: list[Job]

    @property
    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.finished]

    def spread(self, metric: str, how: str) -> Spread | None:
        values = [job.value(metric, how) for job in self.finished]
        return spread([v for v in values if v is not None])

    def seeds(self) -> str:
        return " ".join(str(job.overrides.get(SEED, "-")) for job in sorted(self.jobs, key=lambda j: j.number))


def configurations(jobs: list[Job]) -> list[Configuration]:
    """The sweep's configurations, best mean best-validation top-1 first."""
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[job.configuration].append(job)

    def rank(config: Configuration) -> tuple[float, int]:
        best = config.spread("val/acc_top1", "best")
        return (-(best.mean if best else -1.0), min(job.number for job in config.jobs))

    return sorted((Configuration(group) for group in groups.values()), key=rank)


def mean_and_spread(summary: Spread | None, runs: int) -> str:
    if summary is None:
        return "-"
    text = f"{100 * summary.mean:.2f}" + (f" ± {100 * summary.std:.2f}" if summary.std is not None else "")
    return text + (f" (n={summary.n})" if summary.n != runs else "")


def configuration_table(jobs: list[Job], keys: list[str]) -> str:
    """Each configuration's runs, seeds, and the mean ± standard deviation of every column over its seeds."""
    config_keys = [k for k in keys if k != SEED]
    header = ["configuration", "runs", "seeds", *(heading for heading, _, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for config in configurations(jobs):
        runs = len(config.finished)
        cells = [label(config.jobs[0], config_keys) or "(all jobs)", str(runs), config.seeds()]
        cells += [mean_and_spread(config.spread(metric, how), runs) for _, metric, how in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return (
        "\n## Per configuration: mean ± standard deviation over the seeds\n\n"
        "Jobs that differ only in `seed` are one configuration. Standard deviation: the sample's (n - 1); "
        "runs: the jobs with a validation result.\n\n" + "\n".join(lines) + "\n"
    )


def _parsed(value: str) -> object:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


@dataclass(frozen=True)
class Switch:
    """A setting the sweep gives exactly two values: ``on`` (the feature) against ``off``."""

    key: str
    on: str
    off: str

    @property
    def paper(self) -> tuple[float | None, float | None]:
        _, top1, top5 = PAPER_EFFECTS.get(self.key, (None, None, None))
        return top1, top5

    @property
    def name(self) -> str:
        if self.key in PAPER_EFFECTS:
            return f"{PAPER_EFFECTS[self.key][0]} (`{self.key}`)"
        if self.key in OTHER_NAMES:
            return f"{OTHER_NAMES[self.key]} (`{self.key}`: {self.on} vs {self.off})"
        return f"`{self.key}`: {self.on} vs {self.off}"


def switches(jobs: list[Job], keys: list[str]) -> list[Switch]:
    """Every swept setting (the seed aside) that takes exactly two values in every job: the paper's ablations
    first. The feature side is true for a boolean, the paper's for ``model.groups``, else the larger number, else
    the later value in sorted order."""
    found = []
    for key in keys:
        values = {job.overrides.get(key) for job in jobs}
        if key == SEED or None in values or len(values) != 2:
            continue
        first, second = sorted(values, key=str)
        parsed = {_parsed(first), _parsed(second)}
        if key in FEATURE_VALUE and FEATURE_VALUE[key] in values:
            on = FEATURE_VALUE[key]
        elif parsed == {True, False}:
            on = first if _parsed(first) is True else second
        elif all(isinstance(p, int | float) and not isinstance(p, bool) for p in parsed):
            on = first if _parsed(first) > _parsed(second) else second
        else:
            on = second
        found.append(Switch(key, on, second if on == first else first))
    order = [*PAPER_EFFECTS, *OTHER_NAMES]
    return sorted(found, key=lambda s: (order.index(s.key) if s.key in order else len(order), keys.index(s.key)))


def pairs(jobs: list[Job], switch: Switch) -> list[tuple[Job, Job]]:
    """(on, off) pairs of finished jobs that differ only in the switch: the same seed, everything else equal."""
    groups: dict[tuple, dict[str, Job]] = defaultdict(dict)
    for job in jobs:
        if job.finished:
            others = tuple(sorted((k, v) for k, v in job.overrides.items() if k != switch.key))
            groups[others][job.overrides[switch.key]] = job
    return [(g[switch.on], g[switch.off]) for g in groups.values() if len(g) == 2]


def signed(value: float) -> str:
    return f"{value:+.2f}"


def effect_cell(effect: PairedEffect | None) -> str:
    if effect is None:
        return "-"
    if not effect.has_interval:
        return signed(effect.mean)
    return f"{signed(effect.mean)} [{signed(effect.low)}, {signed(effect.high)}]"


def paper_cell(value: float | None) -> str:
    return "-" if value is None else str(value)


def effects(jobs: list[Job], keys: list[str]) -> str:
    """For each switch, the top-1 and top-5 error it lowers (accuracy gained, in points) as the mean over pairs
    of jobs that differ only in it, beside the paper's numbers. Test accuracy (each job's best checkpoint) when
    every finished job has it, else the best validation accuracy. With several seeds per configuration, each with
    a 95 % interval and a verdict; with one, the mean alone."""
    found = switches(jobs, keys)
    if not found:
        return ""
    uses_test = all(job.value("test/acc_top1", "last") is not None for job in jobs if job.finished)
    top1, top5 = ("test/acc_top1", "test/acc_top5") if uses_test else ("val/acc_top1", "val/acc_top5")
    how = "last" if uses_test else "best"
    with_interval = seeded(jobs)
    rows = []
    for switch in found:
        matched = pairs(jobs, switch)
        if not matched and switch.key not in PAPER_EFFECTS:
            continue
        paper1, paper5 = switch.paper
        measured = [
            paired_effect(
                [100 * on.value(metric, how) for on, _ in matched],
                [100 * off.value(metric, how) for _, off in matched],
                interval=with_interval,
            )
            if matched
            else None
            for metric in (top1, top5)
        ]
        if with_interval:
            cells = [switch.name, str(len(matched))]
            for paper, effect in zip((paper1, paper5), measured, strict=True):
                cells += [paper_cell(paper), effect_cell(effect), verdict(effect, paper) if effect else "-"]
        else:
            cells = [switch.name, str(len(matched)), paper_cell(paper1), effect_cell(measured[0])]
            cells += [paper_cell(paper5), effect_cell(measured[1])]
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return ""
    measured_on = "test accuracy" if uses_test else "best validation accuracy"
    text = (
        "\n## The paper's ablations beside this sweep\n\n"
        "Top-1 / top-5 error lowered by each setting the sweep switches, in percentage points (positive: the "
        f"setting named first, or `true`, helps). Measured: {measured_on}, the mean of the differences between "
        "pairs of jobs that differ only in that setting (the same seed, everything else equal), over the sweep's "
        "other settings. The paper's numbers are ILSVRC-2012 error after about 90 epochs; a short or Fashion-MNIST "
        "run is not expected to match them.\n\n"
    )
    if with_interval:
        header = (
            "| setting | pairs | top-1 paper | top-1 measured [95 % CI] | top-1 verdict "
            "| top-5 paper | top-5 measured [95 % CI] | top-5 verdict |\n|---|---|---|---|---|---|---|---|\n"
        )
        text += (
            f"Interval: {METHOD}. Verdicts: *no effect detected*: the interval includes 0; *consistent with the "
            "paper*: it excludes 0 and includes the paper's number; *smaller than the paper's* / *larger than the "
            "paper's*: it lies wholly below / above it; *opposite to the paper's*: wholly below 0; *effect "
            "detected*: it excludes 0 where the paper gives no number.\n\n" + header
        )
    else:
        text += (
            "Each configuration ran with one seed, so **no interval can be given**: a difference between single "
            "runs mixes the setting's effect with seed-to-seed noise, which is often larger than these effects. "
            "Run every configuration with several seeds (`seed=1,2,3`) for intervals and verdicts.\n\n"
            "| feature | pairs | top-1 paper | top-1 measured | top-5 paper | top-5 measured |\n"
            "|---|---|---|---|---|---|\n"
        )
    return text + "\n".join(rows) + "\n"


def bar_plot(jobs: list[Job], keys: list[str], title: str) -> Figure:
    """Best validation top-1 and top-5 as horizontal bars, one row per job, or with several seeds per
    configuration one row per configuration (its mean, and its standard deviation as an error bar), labelled with
    the settings: readable for a 16-configuration ablation sweep (best at the top)."""
    config_keys = [k for k in keys if k != SEED]
    if seeded(jobs):
        rows = [c for c in reversed(configurations(jobs)) if c.finished]
        labels = [f"{label(c.jobs[0], config_keys) or 'all jobs'}  (n={len(c.finished)})" for c in rows]
        spreads = {m: [c.spread(m, "best") for c in rows] for m in ("val/acc_top1", "val/acc_top5")}
        values = {m: [100 * s.mean for s in spreads[m]] for m in spreads}
        errors = {m: [100 * (s.std or 0.0) for s in spreads[m]] for m in spreads}
        xlabel = "validation accuracy (%): mean ± standard deviation over the seeds"
    else:
        finished = list(reversed([job for job in ranked(jobs) if job.finished]))
        labels = [f"#{job.number}  {label(job, keys)}" for job in finished]
        values = {
            m: [100 * (job.value(m, "best") or 0.0) for job in finished] for m in ("val/acc_top1", "val/acc_top5")
        }
        errors = None
        xlabel = "validation accuracy (%)"
    height = 1.6 + 0.42 * max(len(labels), 1)
    figure, axes = plt.subplots(figsize=(9, height))
    thickness = 0.38
    for offset, metric, colour, name in (
        (thickness / 2, "val/acc_top1", "#1f77b4", "top-1"),
        (-thickness / 2, "val/acc_top5", "#9ecae1", "top-5"),
    ):
        positions = [i + offset for i in range(len(labels))]
        if errors:
            axes.barh(positions, values[metric], thickness, color=colour, label=name, xerr=errors[metric], capsize=3,
                      error_kw={"elinewidth": 1})  # fmt: skip
            for y, value, error in zip(positions, values[metric], errors[metric], strict=True):  # past the error bar
                axes.text(value + error + 1, y, f"{value:.1f}", fontsize=7, va="center")
        else:
            bars = axes.barh(positions, values[metric], thickness, color=colour, label=name)
            axes.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_xlim(0, 112)
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=9, loc="right")
    if labels:  # above the bars, where no bar or value can be under it
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
    several_seeds = seeded(jobs)
    lines = [
        f"# {folder.name}: {len(jobs)} jobs, accuracy in %\n",
        f"Common to every job: {' '.join(common)}\n" if common else "",
        configuration_table(jobs, keys) if several_seeds else "",
        "\n## Jobs\n" if several_seeds else "",
        markdown_table(jobs, keys),
        f"\nJobs without a validation result (failed, unfinished or no metrics file): {failed}\n" if failed else "",
        effects(jobs, keys),
    ]
    table.write_text("\n".join(line for line in lines if line))
    figure = bar_plot(jobs, keys, f"best validation top-1 / top-5 per configuration: {folder.name}")
    figure.savefig(plot, dpi=100)
    plt.close(figure)
    return table, plot
