"""Scale and sweeps: DDP on CPU processes, multiruns with one W&B run per job (grouped by configuration, tagged with
the seed), the report of a multi-seed sweep against SciPy, the Optuna search with pruning, submitit."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from scipy import stats
from wandb.proto import wandb_internal_pb2

from alexnet.analysis.paper_figures import FILES
from alexnet.analysis.sweep_report import report
from alexnet.config.invocation import Invocation, swept_keys
from alexnet.run import build
from alexnet.run.wandb_run import finishing_wandb, name_wandb_runs
from conftest import assert_visible, column, compose_config, read_metrics, run_cli, run_main, train_config

TINY = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.download=false",
        "data.batch_size=8", "++callbacks.progress_bar=null", "trainer.log_every_n_steps=1"]  # fmt: skip


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """The records of an offline ``run-<id>.wandb`` file: a 7-byte header, then LevelDB-log framing (32 KiB
    blocks; each chunk has a CRC, a length and a type: full, first, middle or last) around protobuf Records."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, position, pending = [], 7, b""
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:  # the rest of a block too short for a chunk header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            break
        pending += chunk
        if kind in (1, 4):  # full or last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(folder: Path) -> dict:
    (run_file,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    history, run = [], None
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "run":
            run = record.run
    images = run_file.parent / "files" / "media" / "images"
    media = sorted(str(p.relative_to(images)) for p in images.glob("*/*.png"))  # <key prefix>/<key>_<step>_<hash>.png
    return {"id": run.run_id, "name": run.display_name, "group": run.run_group, "tags": list(run.tags),
            "history": history, "media": media}  # fmt: skip


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_validates_like_one_process(tmp_path: Path, fashion_root: Path) -> None:
    run_dir = tmp_path / "ddp"
    # 41 validation images: 21 + 20 over two ranks; a padding sampler would count one twice.
    settings = [*TINY, "data.val_size=41", "trainer.max_epochs=1", "trainer.limit_train_batches=4", "test=false"]
    result = run_cli("alexnet-train", "trainer=ddp_cpu", "trainer.devices=2", f"data.root={fashion_root}",
                     *settings, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_metrics(run_dir / "csv" / "metrics.csv")
    ddp_top1, ddp_top5 = column(rows, "val/acc_top1")[-1], column(rows, "val/acc_top5")[-1]
    assert len(column(rows, "val/acc_top1")) == 1, "one process (rank 0) logged"

    cfg = train_config(tmp_path / "single", fashion_root, [*settings, "logger=none", "callbacks=none"])
    run = build(cfg)
    last = str(run_dir / "checkpoints" / "last.ckpt")
    (single,) = run.trainer.validate(run.module, datamodule=run.datamodule, ckpt_path=last, verbose=False)
    assert single["val/acc_top1"] == pytest.approx(ddp_top1, abs=1e-6)
    assert single["val/acc_top5"] == pytest.approx(ddp_top5, abs=1e-6)
    assert round(ddp_top1 * 41) == pytest.approx(ddp_top1 * 41, abs=1e-4), "a whole number of the 41 images"


@pytest.mark.slow
def test_ddp_losses_are_the_mean_over_all_images_whatever_the_shard_sizes(tmp_path: Path, fashion_root: Path) -> None:
    """5 validation images on 2 ranks: 3 and 2. The loss is the mean over the 5, not the mean of the ranks' means."""
    run_dir = tmp_path / "ddp"
    settings = [*TINY, "data.val_size=5", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false"]
    result = run_cli("alexnet-train", "trainer=ddp_cpu", "trainer.devices=2", f"data.root={fashion_root}",
                     *settings, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ddp_loss = column(read_metrics(run_dir / "csv" / "metrics.csv"), "val/loss")[-1]
    cfg = train_config(tmp_path / "single", fashion_root, [*settings, "logger=none", "callbacks=none"])
    run = build(cfg)
    last = str(run_dir / "checkpoints" / "last.ckpt")
    (single,) = run.trainer.validate(run.module, datamodule=run.datamodule, ckpt_path=last, verbose=False)
    assert single["val/loss"] == pytest.approx(ddp_loss, rel=1e-6)


def logger_copy(sweep: Path, destination: Path, kept: tuple[str, ...]) -> Path:
    """The sweep's job folders with only the Hydra record and the files of the loggers ``kept``."""
    for job in (p for p in sweep.iterdir() if p.name.isdigit()):
        for name in (".hydra", *kept):
            shutil.copytree(job / name, destination / job.name / name)
    return destination


@pytest.mark.slow
def test_four_job_multirun_gives_four_wandb_runs_visible_pictures_and_a_report_per_logger(
    tmp_path: Path, fashion_root: Path
) -> None:
    result = run_cli("alexnet-train", "-m", f"data.root={fashion_root}", *TINY, "data.val_size=40",
                     "trainer.max_epochs=1", "trainer.limit_train_batches=3", "logger=[tensorboard,wandb]",
                     "callbacks.wandb_media.examples=4", f"paths.log_dir={tmp_path}", "model.lrn=true,false",
                     "seed=1,2",
                     cwd=tmp_path, timeout=400)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    runs = [wandb_run(job) for job in jobs]
    assert len({r["id"] for r in runs}) == 4, "one W&B run per job"
    for job, run in zip(jobs, runs, strict=True):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        named = sorted(o for o in overrides if o.startswith(("model.", "trainer.", "seed="))
                       or o.startswith("data.") and not o.startswith("data.root"))  # fmt: skip
        assert run["name"] == ",".join(named)
        # grouped by the swept settings but the seed (W&B draws a group as its mean and spread), seed as a tag
        assert run["group"] == f"sweep-{sweep.name}/" + next(o for o in named if o.startswith("model.lrn="))
        seed = next(o for o in overrides if o.startswith("seed="))
        assert seed in run["tags"], run["tags"]
    assert len({r["group"] for r in runs}) == 2, "two configurations, two seeds each"
    for job, run in zip(jobs, runs, strict=True):
        logged = set().union(*run["history"])
        assert {"train/loss_step", "val/acc_top1", "val/acc_top5", "lr-SGD"} <= logged, logged
        media = {name.rsplit("_", 2)[0] for name in run["media"]}
        assert media == {
            "media/conv1_filters",
            "media/val_confusion_matrix",
            "media/val_examples",
            "figures/kernels",
            "figures/predictions",
            "figures/neighbours",
            "figures/curves",
        }, media
        # Every picture W&B stored (nearly random weights after 3 steps, real test images) can be seen.
        for png in job.glob("wandb/offline-run-*/files/media/images/**/*.png"):
            assert_visible(png)
        assert sorted(p.name for p in (job / "figures").glob("*.png")) == sorted(FILES.values())
        saved = yaml.safe_load((job / "config_resolved.yaml").read_text())
        assert saved["logger"]["wandb"]["id"] == run["id"] and saved["git_commit"]

    # What W&B recorded is what the report must show, whichever logger's files it reads.
    wandb_values = []
    for run in runs:
        last = {k: v for row in run["history"] for k, v in row.items()}
        wandb_values.append([f"{100 * last[m]:.2f}" for m in ("val/acc_top1", "val/acc_top5", "test/acc_top1")])
    copies = {  # what logger=csv, logger=tensorboard and logger=wandb (which keeps csv/ too) write
        "csv": logger_copy(sweep, tmp_path / "csv_only" / sweep.name, ("csv",)),
        "tensorboard": logger_copy(sweep, tmp_path / "tensorboard_only" / sweep.name, ("tensorboard",)),
        "wandb": logger_copy(sweep, tmp_path / "wandb_only" / sweep.name, ("wandb", "csv")),
    }
    for logger, folder in copies.items():
        if logger == "wandb":
            made = run_main("alexnet-report", str(folder), cwd=folder)  # the command itself, in this process
            assert made.returncode == 0, made.stderr[-2000:]
        else:
            report(folder)
        table = (folder / "report.md").read_text().splitlines()
        header = next(line for line in table if line.startswith("| job"))
        assert header == ("| job | model.lrn | seed | val top-1 | best val top-1 | val top-5 | best val top-5 "
                          "| test top-1 | test top-5 | epochs | read from |")  # fmt: skip
        rows = {int(line.split(" | ")[0].strip("| ")): line.strip("| ").split(" | ") for line in table
                if re.match(r"\| \d+ \|", line)}  # fmt: skip
        assert sorted(rows) == [0, 1, 2, 3], f"{logger}: every job reported"
        for number, expected in enumerate(wandb_values):
            row = rows[number]
            assert [row[3], row[5], row[7]] == expected, (logger, number, row)
            assert row[4] == row[3] and row[6] == row[5], "one epoch: best = final"
            assert row[9] == "1" and row[10] == ("tensorboard" if logger == "tensorboard" else "csv")
        assert "| local response normalisation (`model.lrn`) | 2 | 1.4 | " in "\n".join(table)
        assert any(line.startswith("| lrn=True | 2 | 1 2 |") for line in table), "a row per configuration"
        assert_visible(folder / "report.png")


def metrics_row(job: Path) -> dict[str, float]:
    """A job's final and best validation and test accuracy, read from its metrics.csv (in %)."""
    rows = read_metrics(job / "csv" / "metrics.csv")
    val1, val5 = column(rows, "val/acc_top1"), column(rows, "val/acc_top5")
    return {"val top-1": 100 * val1[-1], "best val top-1": 100 * max(val1), "val top-5": 100 * val5[-1],
            "best val top-5": 100 * max(val5), "test top-1": 100 * column(rows, "test/acc_top1")[-1],
            "test top-5": 100 * column(rows, "test/acc_top5")[-1]}  # fmt: skip


def markdown_rows(text: str, header_start: str) -> tuple[list[str], dict[str, list[str]]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = lines[start].strip("| ").split(" | ")
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = line.strip("| ").split(" | ")
        rows[cells[0]] = cells
    return header, rows


@pytest.mark.slow
def test_a_two_by_three_seed_sweep_reports_what_scipy_computes_from_the_jobs_metrics(
    tmp_path: Path, fashion_root: Path
) -> None:
    # data.normalization=paper: raw pixels, the scale at which LRN changes what the net computes from the start
    result = run_cli("alexnet-train", "-m", f"data.root={fashion_root}", *TINY, "data.val_size=40",
                     "data.normalization=paper", "trainer.max_epochs=1", "trainer.limit_train_batches=5",
                     f"paths.log_dir={tmp_path}", "model.lrn=true,false", "seed=1,2,3",
                     cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    made = run_main("alexnet-report", str(sweep), cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    text = (sweep / "report.md").read_text()

    measured: dict[tuple[str, str], dict[str, float]] = {}  # (lrn, seed) -> the job's numbers, from its own files
    for job in (p for p in sweep.iterdir() if p.name.isdigit()):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        measured[(overrides["model.lrn"], overrides["seed"])] = metrics_row(job)
    assert sorted(measured) == [(lrn, seed) for lrn in ("False", "True") for seed in ("1", "2", "3")]

    header, configs = markdown_rows(text, "| configuration |")
    assert sorted(configs) == ["lrn=False", "lrn=True"]
    for lrn in ("True", "False"):
        cells = dict(zip(header, configs[f"lrn={lrn}"], strict=True))
        assert (cells["runs"], cells["seeds"]) == ("3", "1 2 3")
        for column_name in ("val top-1", "best val top-1", "val top-5", "best val top-5", "test top-1", "test top-5"):
            values = [measured[(lrn, seed)][column_name] for seed in ("1", "2", "3")]
            expected = f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"
            assert cells[column_name] == expected, (lrn, column_name, values)

    header, effects = markdown_rows(text, "| setting |")
    cells = dict(zip(header, effects["local response normalisation (`model.lrn`)"], strict=True))
    assert cells["pairs"] == "3"
    spread = set()
    for top in ("top-1", "top-5"):  # measured on test accuracy: every job was tested
        differences = [measured[("True", s)][f"test {top}"] - measured[("False", s)][f"test {top}"] for s in "123"]
        mean = float(np.mean(differences))
        low, high = stats.t.interval(0.95, df=2, loc=mean, scale=stats.sem(differences))
        assert cells[f"{top} measured [95 % CI]"] == f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]", (top, differences)
        paper = {"top-1": 1.4, "top-5": 1.2}[top]
        said = ("no effect detected" if low <= 0 <= high else "consistent with the paper" if low <= paper <= high
                else "smaller than the paper's" if 0 < high < paper else "larger than the paper's" if low > paper
                else "opposite to the paper's")  # fmt: skip
        assert cells[f"{top} verdict"] == said
        spread.add(np.std(differences) > 0)
    assert spread == {True}, "the seeds gave different differences: a real interval, not a point"
    assert "scipy.stats.ttest_rel" in text
    assert_visible(sweep / "report.png")


@pytest.mark.slow
def test_optuna_5_search_prunes_a_trial_that_does_not_learn_and_continues_its_study_across_launchers(
    tmp_path: Path, fashion_root: Path
) -> None:
    """lr 0.02 learns (val top-1 0.225 after one epoch here), lr 1e-7 does not (0.1). The median pruner, set to act
    after one complete trial from the first epoch on, stops a 1e-7 trial after its first epoch. The second call
    runs its trial through submitit (another process), which must reach the same SQLite study."""
    args = ["hparams_search=fashion_mnist_optuna", f"data.root={fashion_root}", *TINY, "data.val_size=40",
            "trainer.max_epochs=2", "trainer.limit_train_batches=20", "test=false", f"paths.log_dir={tmp_path}",
            "++callbacks.checkpoint=null", "++callbacks.best_checkpoint=null",
            "optimizer.lr=choice(0.02,1e-7)", "optimizer.weight_decay=5e-4", "model.dropout=0",
            "module.label_smoothing=0.0", "hydra.sweeper.n_trials=1", "hydra.sweeper.pruner.n_startup_trials=1",
            "hydra.sweeper.pruner.n_warmup_steps=0",
            "hydra.sweeper.sampler.seed=2"]  # seed 2 draws 0.02, then (seed 2 + 1 trial) 1e-7  # fmt: skip
    first = run_cli("alexnet-train", *args, cwd=tmp_path, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_cli("alexnet-train", *args, "hydra/launcher=local", cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr + first.stderr and "Error executing job" not in again.stderr

    study = optuna.load_study(
        study_name="alexnet_fashion_mnist", storage=f"sqlite:///{tmp_path}/optuna/alexnet_fashion_mnist.db"
    )
    assert [t.params["optimizer.lr"] for t in study.trials] == [0.02, 1e-7], "the sampler's draws changed"
    complete, pruned = study.trials
    assert complete.state.name == "COMPLETE" and pruned.state.name == "PRUNED", "pruned, not failed"
    assert complete.intermediate_values == {0: pytest.approx(0.225), 1: complete.value} and complete.value > 0.5
    assert pruned.intermediate_values == {0: pytest.approx(0.1)}, "reported once, then stopped by the pruner"
    sweeps = sorted((tmp_path / "multirun").iterdir())
    assert len(sweeps) == 2 and (sweeps[1] / ".submitit").is_dir()
    overrides = yaml.safe_load((sweeps[1] / "0" / ".hydra" / "overrides.yaml").read_text())
    assert "callbacks.optuna_pruning.trial=1" in overrides and "optimizer.lr=1e-07" in overrides
    rows = read_metrics(sweeps[1] / "0" / "csv" / "metrics.csv")
    assert len(column(rows, "val/acc_top1")) == 1, "the pruned trial's job stopped after one of its two epochs"
    results = yaml.safe_load((sweeps[1] / "optimization_results.yaml").read_text())
    assert results["this_call"] == {"complete": 0, "pruned": 1, "failed": 0} and results["trials_in_study"] == 2
    assert results["best_params"] == {"optimizer.lr": 0.02}


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_jobs(tmp_path: Path, fashion_root: Path) -> None:
    result = run_cli("alexnet-train", "-m", "hydra/launcher=local", f"data.root={fashion_root}", *TINY,
                     "data.val_size=40", "debug=fdr", f"paths.log_dir={tmp_path}", "model.lrn=true,false",
                     cwd=tmp_path, timeout=400)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    submitted = [p for p in (sweep / ".submitit").iterdir() if p.name != "%j"]  # "%j": submitit's own template
    assert len(submitted) == 2, "each job went through submitit"
    for job in ("0", "1"):
        assert (sweep / job / "config_resolved.yaml").is_file()


def test_launcher_configs_compose_with_one_task_per_gpu() -> None:
    cfg = compose_config("train", ["hydra/launcher=slurm_multi_gpu", "trainer=ddp", "trainer.devices=8"])
    assert cfg.trainer.devices == 8  # the launcher's tasks_per_node / gpus_per_node follow it (checked below)
    from hydra import compose, initialize_config_dir

    from alexnet.config.location import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        full = compose("train", ["hydra/launcher=slurm_multi_gpu", "trainer=ddp", "trainer.devices=8"],
                       return_hydra_config=True)  # fmt: skip
        launcher = full.hydra.launcher
        assert "SlurmLauncher" in launcher._target_
        assert (launcher.tasks_per_node, launcher.gpus_per_node) == (8, 8)
        one = compose("train", ["hydra/launcher=slurm_gpu"], return_hydra_config=True).hydra.launcher
        assert (one.tasks_per_node, one.gpus_per_node) == (1, 1)


def test_multirun_with_multi_device_ddp_is_refused_at_once(tmp_path: Path) -> None:
    # A hang (every rank relaunching the sweep) fails by the timeout.
    result = run_cli("alexnet-train", "-m", f"paths.log_dir={tmp_path}", "trainer=ddp_cpu", "model.lrn=true,false",
                     cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 2
    assert "hydra/launcher=slurm_multi_gpu" in result.stderr and "Traceback" not in result.stderr


def test_ablation_experiment_sweeps_sixteen_configurations_with_three_seeds_each() -> None:
    from hydra import compose, initialize_config_dir

    from alexnet.config.location import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["experiment=ablation_fashion_mnist"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert dict(params) == {"model.lrn": "true,false", "model.groups": "1,2", "model.input_size": "224,227",
                            "model.overlapping_pool": "true,false", "seed": "1,2,3"}  # fmt: skip
    assert cfg.model.channels == [96, 256, 384, 384, 256]  # the paper's net


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep_and_its_wandb_run_is_finished(
    tmp_path: Path, fashion_root: Path
) -> None:
    # Job 0 fails in data setup, after its W&B run has started; job 1 must still run.
    result = run_cli("alexnet-train", "-m", f"data.root={fashion_root}", *TINY, "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "logger=wandb", f"paths.log_dir={tmp_path}",
                     "data.val_size=100000,40", cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 1
    assert "error: data.val_size=100000 leaves no training" in result.stderr
    (sweep,) = (tmp_path / "multirun").iterdir()
    exits = {}
    for job in ("0", "1"):
        (run_file,) = (sweep / job).glob("wandb/offline-run-*/run-*.wandb")
        records = [r for r in wandb_records(run_file) if r.WhichOneof("record_type") == "exit"]
        exits[job] = records[0].exit.exit_code if records else None
    assert exits == {"0": 1, "1": 0}, "both runs finished; the failed one marked failed"
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()


def test_multi_device_ddp_under_a_multirun_is_allowed_when_slurm_starts_the_ranks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alexnet.errors import LaunchError
    from alexnet.run.build import check_launch

    cfg = compose_config("train", ["trainer=ddp", "trainer.devices=8"])
    check_launch(cfg, multirun=False)  # one run: Lightning starting the other ranks is what ddp does
    with pytest.raises(LaunchError, match="hydra/launcher=slurm_multi_gpu"):
        check_launch(cfg, multirun=True)
    for name, value in {"SLURM_NTASKS": "8", "SLURM_JOB_NAME": "alexnet", "SLURM_NODELIST": "gpu01"}.items():
        monkeypatch.setenv(name, value)
    check_launch(cfg, multirun=True)  # SLURM (submitit) started one task per GPU: nothing is relaunched


def test_the_runs_of_a_multi_seed_sweep_are_grouped_by_configuration_and_tagged_with_their_seed(
    tmp_path: Path,
) -> None:
    sweep = tmp_path / "multirun" / "2026-01-31"
    sweep.mkdir(parents=True)
    OmegaConf.save({"hydra": {"overrides": {"task": ["model.lrn=true,false", "seed=1,2", "trainer.max_epochs=1",
                                                     "paths.log_dir=/x", "model.input_size=227"]},
                              "sweeper": {"params": {"model.groups": "1,2", "model.input_size": "224,227"}}}},
                   sweep / "multirun.yaml")  # fmt: skip
    swept = swept_keys(sweep)
    # from the sweep's own record, multirun.yaml: the config's sweeps and the typed ones; a value typed replaces one
    assert swept == ("model.groups", "model.lrn", "seed")
    job = ("model.groups=2", "model.lrn=false", "seed=3", "trainer.max_epochs=1", "paths.log_dir=/x", "data.root=/d")
    seeded = Invocation(job, True, str(sweep), swept=swept)
    assert seeded.job_name == "model.groups=2,model.lrn=false,seed=3,trainer.max_epochs=1" and seeded.seed == "3"
    assert seeded.run_group == "sweep-2026-01-31/model.groups=2,model.lrn=false", "what the sweep varies, seed aside"
    assert Invocation(job, True, str(sweep), swept=("model.lrn",)).run_group == "sweep-2026-01-31", "seed not swept"
    assert Invocation(("seed=3",), True, str(sweep), swept=("seed",)).run_group == "sweep-2026-01-31"
    unseeded = Invocation(("model.lrn=false",), True, str(sweep), swept=("model.lrn",))
    assert unseeded.run_group == "sweep-2026-01-31" and unseeded.seed is None
    assert Invocation(("seed=3",), False, None, "ablation_fashion_mnist").run_group == "ablation_fashion_mnist"
    # without the sweep's record: every override but the seed, kept to W&B's 128 characters
    assert swept_keys(tmp_path) is None
    assert (
        Invocation(job, True, str(sweep)).run_group
        == "sweep-2026-01-31/model.groups=2,model.lrn=false,trainer.max_epochs=1"
    )
    long = Invocation((*(f"model.setting_{i}=value_{i}" for i in range(9)), "seed=1"), True, "/x/multirun/d")
    assert len(long.run_group) == 128 and long.run_group.startswith("sweep-d/model.setting_0=value_0")
    assert long.run_group != Invocation((*long.overrides[:8], "seed=1"), True, "/x/multirun/d").run_group

    wandb_entry = {"_target_": "lightning.pytorch.loggers.WandbLogger", "tags": ["lrn"]}
    logger = OmegaConf.create({"csv": {"_target_": "x.CSVLogger"}, "wandb": wandb_entry})
    name_wandb_runs(logger, seeded.job_name, seeded.run_group, seeded.seed)
    assert logger.wandb.group == "sweep-2026-01-31/model.groups=2,model.lrn=false"
    assert list(logger.wandb.tags) == ["lrn", "seed=3"]


def test_a_pruned_trial_finishes_its_wandb_run_as_pruned_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    from alexnet.search.pruning import TrialPruned

    finished, run = [], type("Run", (), {"tags": ("seed=1",)})()
    monkeypatch.setattr(wandb, "run", run)
    monkeypatch.setattr(wandb, "finish", lambda exit_code: finished.append(exit_code))
    loggers = [WandbLogger(offline=True)]  # not started: the run above stands in for W&B's
    with pytest.raises(TrialPruned), finishing_wandb(loggers):
        raise TrialPruned("Trial was pruned at epoch 1.")
    assert finished == [0] and run.tags == ("seed=1", "pruned")
    with pytest.raises(RuntimeError), finishing_wandb(loggers):
        raise RuntimeError("a crash")
    assert finished == [0, 1]
