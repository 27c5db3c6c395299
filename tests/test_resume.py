"""Runs that die resume exactly; signals save a checkpoint; a dead DDP rank ends the job; NaN losses stop it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from alexnet.errors import UserError
from alexnet.run.build import build
from alexnet.run.training import train
from conftest import BIN, column, read_metrics, run_cli, train_config

# Small enough to be quick, slow enough (about 0.1 s a step on 2 cores) to be killed half-way.
SMALL = ["model.input_size=96", "data.download=false", "data.val_size=40", "data.batch_size=8", "test=false",
         "++callbacks.progress_bar=null", "trainer.log_every_n_steps=1", "trainer.deterministic=true"]  # fmt: skip
ENV = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def start(tmp_path: Path, run_dir: Path, data_root: Path, *args: str) -> subprocess.Popen:
    command = [str(BIN / "alexnet-train"), f"data.root={data_root}", *SMALL, f"hydra.run.dir={run_dir}", *args]
    log = (tmp_path / f"{run_dir.name}.log").open("w")
    return subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=log, stderr=subprocess.STDOUT)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Wait for a file a running process writes; the timeout only stops a hang (it asserts no speed)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def saved_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def net_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_in_the_same_folder(tmp_path: Path, fashion_root: Path) -> None:
    n = 60  # 45 batches an epoch: the run crosses an epoch boundary and a validation after the kill
    steps = [f"trainer.max_steps={n}", "callbacks.checkpoint.every_n_train_steps=20"]
    straight = tmp_path / "straight"
    result = run_cli("alexnet-train", f"data.root={fashion_root}", *SMALL, *steps, f"hydra.run.dir={straight}",
                     cwd=tmp_path, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]

    killed = tmp_path / "killed"
    process = start(tmp_path, killed, fashion_root, *steps)
    wait_for(killed / "checkpoints" / "last.ckpt", process)
    process.send_signal(signal.SIGKILL)  # from outside: no handler runs, nothing is saved on the way out
    process.wait(timeout=30)
    stopped_at = saved_step(killed / "checkpoints" / "last.ckpt")
    assert stopped_at < n, "the kill came before the end"

    result = run_cli("alexnet-train", f"resume={killed}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert saved_step(killed / "checkpoints" / "last.ckpt") == n
    a, b = net_weights(straight / "checkpoints" / "last.ckpt"), net_weights(killed / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights equal the straight run's exactly"

    rows_a, rows_b = read_metrics(straight / "csv" / "metrics.csv"), read_metrics(killed / "csv" / "metrics.csv")
    losses_a, losses_b = column(rows_a, "train/loss_step"), column(rows_b, "train/loss_step")
    # One file, every step once, the same values (a checkpoint takes its place once its step's row is written).
    assert losses_b == losses_a, (stopped_at, losses_a, losses_b)
    assert len(losses_a) == n
    assert (killed / ".hydra" / "overrides.yaml").read_text() == (straight / ".hydra" / "overrides.yaml").read_text()
    assert len(list((killed / ".hydra").glob("resumed_*"))) == 1
    assert not (tmp_path / "outputs").exists(), "no new run folder for the resume"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1], ids=lambda s: s.name)
def test_signal_mid_epoch_saves_a_checkpoint_that_resumes(tmp_path: Path, fashion_root: Path, signum: int) -> None:
    run_dir = tmp_path / "run"
    process = start(
        tmp_path, run_dir, fashion_root, "trainer.max_steps=1000", "callbacks.checkpoint.every_n_train_steps=5"
    )
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)
    process.send_signal(signum)
    assert process.wait(timeout=60) == 128 + signum
    log = (tmp_path / "run.log").read_text()
    stopped_at = saved_step(run_dir / "checkpoints" / "last.ckpt")
    assert 5 <= stopped_at < 45, "saved mid-epoch, at the step it stopped"
    assert f"Stopped by {signum.name} at step {stopped_at}." in log and f"resume={run_dir}" in log
    assert "Traceback" not in log
    result = run_cli("alexnet-train", f"resume={run_dir}", f"trainer.max_steps={stopped_at + 3}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert saved_step(run_dir / "checkpoints" / "last.ckpt") == stopped_at + 3


@pytest.mark.slow
def test_a_dead_ddp_rank_ends_the_job_with_an_error(tmp_path: Path, fashion_root: Path) -> None:
    run_dir = tmp_path / "ddp"
    process = start(tmp_path, run_dir, fashion_root, "trainer=ddp_cpu", "trainer.max_steps=1000",
                    "callbacks.checkpoint.every_n_train_steps=5")  # fmt: skip
    wait_for(run_dir / "checkpoints" / "last.ckpt", process)
    ranks = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(ranks) == 1, "Lightning started rank 1 as a child of rank 0"
    os.kill(int(ranks[0]), signal.SIGKILL)
    assert process.wait(timeout=300) == 2  # a hang fails here, by the timeout
    log = (tmp_path / "ddp.log").read_text()
    assert "error: Another DDP rank stopped, so this one stops too" in log and f"resume={run_dir}" in log


def test_resume_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    result = run_cli("alexnet-train", f"resume={tmp_path / 'nothing'}", cwd=tmp_path)
    assert result.returncode == 2 and "no run to continue" in result.stderr and "Traceback" not in result.stderr


def nan_at(run, step: int) -> None:
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += module.training
        return output * float("nan") if module.training and calls["n"] == step else output

    run.module.net.register_forward_hook(poison)


def test_nan_loss_stops_naming_the_step_and_last_checkpoint(tmp_path: Path, fashion_root: Path) -> None:
    cfg = train_config(tmp_path, fashion_root, ["model.input_size=67", "model.channels=[8,16,16,16,16]",
                       "model.hidden_size=32", "trainer.max_steps=10", "callbacks.checkpoint.every_n_train_steps=2",
                       "logger=none", "test=false"])  # fmt: skip
    run = build(cfg)
    nan_at(run, 5)
    with pytest.raises(UserError) as error:
        run.trainer.fit(run.module, datamodule=run.datamodule)
    message = str(error.value)
    assert "The training loss became nan at step 5 (epoch 0, batch 4)" in message
    assert f"Last good checkpoint: {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}" in message
    assert saved_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 4


def test_nan_loss_skip_drops_only_that_batch(tmp_path: Path, fashion_root: Path) -> None:
    cfg = train_config(tmp_path, fashion_root, ["model.input_size=67", "model.channels=[8,16,16,16,16]",
                       "model.hidden_size=32", "trainer.limit_train_batches=6", "trainer.max_epochs=1",
                       "module.nonfinite_loss=skip", "logger=none", "test=false", "++callbacks.checkpoint=null",
                       "++callbacks.best_checkpoint=null"])  # fmt: skip
    run = build(cfg)
    nan_at(run, 3)
    snapshots = {}

    class Snapshot(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            snapshots[("before", batch_idx)] = [p.detach().clone() for p in module.parameters()]

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            snapshots[("after", batch_idx)] = [p.detach().clone() for p in module.parameters()]

    run.trainer.callbacks.append(Snapshot())
    run.trainer.fit(run.module, datamodule=run.datamodule)
    unchanged = [torch.equal(a, b) for a, b in zip(snapshots[("before", 2)], snapshots[("after", 2)], strict=True)]
    assert all(unchanged), "the poisoned third batch changed no weight"
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[("before", 3)], snapshots[("after", 3)], strict=True))
    assert all(torch.isfinite(p).all() for p in run.module.parameters())


def test_a_full_disk_fails_at_start(tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alexnet.run import training as run_module

    monkeypatch.setattr(
        run_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6)
    )
    cfg = train_config(tmp_path, fashion_root, ["model=paper"])
    # 56,909,194 fp32 weights (10 classes) + as many momentum values + the mean image + 1 MiB: 457,108,560 bytes
    with pytest.raises(UserError, match=r"Only 0.00 GiB free in .*checkpoints take about 0.43 GiB each"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_slurm_pre_emption_requeues_the_job_and_the_requeued_job_continues_its_folder(
    tmp_path: Path, fashion_root: Path
) -> None:
    """SIGUSR1 (sbatch --signal=USR1@120) under SLURM: last.ckpt at the next clean step, `scontrol requeue <job>`,
    and the same command (the requeued job) continues runs/slurm-<job id>/ by itself with resume=auto."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.log"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "alexnet", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "PATH": f"{bin_dir}:{os.environ['PATH']}"}  # fmt: skip
    env = {**ENV, **slurm}
    command = [str(BIN / "alexnet-train"), f"data.root={fashion_root}", *SMALL, "resume=auto",
               "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "trainer.max_epochs=40",
               f"paths.log_dir={tmp_path / 'out'}"]  # fmt: skip
    folder = tmp_path / "out" / "runs" / "slurm-4242"
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(folder / "checkpoints" / "last.ckpt", first)
        first.send_signal(signal.SIGUSR1)
        assert first.wait(timeout=120) == 128 + signal.SIGUSR1, (tmp_path / "first.log").read_text()[-2000:]
    assert calls.read_text() == "requeue 4242\n"
    stopped_at = saved_step(folder / "checkpoints" / "last.ckpt")
    assert 0 < stopped_at < 160 and "Requeued SLURM job 4242" in (tmp_path / "first.log").read_text()
    requeued = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert saved_step(folder / "checkpoints" / "last.ckpt") == 160
    epochs = [int(float(r["epoch"])) for r in read_metrics(folder / "csv" / "metrics.csv") if r.get("val/acc_top1")]
    assert epochs == list(range(40)), "every epoch's validation once"
    assert [p.name for p in (tmp_path / "out" / "runs").iterdir()] == ["slurm-4242"]
