"""A run's state is never lost, never mixed: one resume point, a self-contained folder, one writer at a time,
nothing written by a resume that fails, no checkpoint replaced outside fitting, every epoch's metrics kept."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from alexnet.config.invocation import Invocation
from alexnet.errors import UserError
from alexnet.run import training as run_module
from alexnet.run.folder import LOCK_FILE
from alexnet.run.training import train
from conftest import BIN, column, read_metrics, run_main, train_config

# Four training and two validation batches an epoch, on a tiny net: each run takes seconds.
TINY = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.batch_size=8",
        "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "trainer.log_every_n_steps=1", "test=false"]  # fmt: skip
STEPS_PER_EPOCH = 4


def run_train(tmp_path: Path, data: Path, *overrides: str) -> float | None:
    """``alexnet-train <overrides>`` in this process, with the overrides recorded as typed."""
    return train(train_config(tmp_path, data, [*TINY, *overrides]), Invocation(overrides=tuple(overrides)))


def resume(tmp_path: Path, data: Path, folder: Path, *overrides: str) -> float | None:
    return run_train(tmp_path, data, f"paths.output_dir={folder}", f"resume={folder}", *overrides)


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, its lock file included, by relative path, with the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def epochs_logged(rows: list[dict[str, str]], metric: str) -> list[int]:
    return [int(float(r["epoch"])) for r in rows if r.get(metric)]


class SignalWhen(Callback):
    """Sends this process a signal at the first hook call for which ``when(trainer, batch_idx)`` holds."""

    def __init__(self, hook: str, when: Callable, signum: int = signal.SIGTERM) -> None:
        self.when, self.signum, self.sent = when, signum, False
        setattr(self, hook, self._maybe_signal)

    def _maybe_signal(self, trainer, module, batch, batch_idx, *args) -> None:
        if not self.sent and self.when(trainer, batch_idx):
            self.sent = True
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def add_callback(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callback], None]:
    """Add a callback to the next runs ``alexnet.run.train`` builds (not to their saved config)."""
    build = run_module.build

    def add(callback: Callback) -> None:
        def build_with(cfg, multirun=False):
            built = build(cfg, multirun)
            built.trainer.callbacks.append(callback)
            return built

        monkeypatch.setattr(run_module, "build", build_with)

    return add


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> Path:
    """A finished one-epoch run of a two-tower tiny net; tests copy it before touching it."""
    tmp = tmp_path_factory.mktemp("finished")
    run_train(tmp, fashion_root, "model.groups=2", "trainer.max_epochs=1")
    return tmp / "run"


@pytest.fixture
def copied_run(tmp_path: Path, finished_run: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(finished_run, folder, symlinks=True)
    (folder / ".lock").unlink(missing_ok=True)
    return folder


def test_case_1_stopped_in_epoch_0_then_resumed_twice_keeps_one_resume_point(
    tmp_path: Path, fashion_root: Path, add_callback: Callable
) -> None:
    add_callback(SignalWhen("on_train_batch_start", lambda trainer, i: trainer.global_step == 2))
    with pytest.raises(SystemExit) as stopped:
        run_train(tmp_path, fashion_root, "trainer.max_epochs=3")
    assert stopped.value.code == 128 + signal.SIGTERM
    folder = tmp_path / "run"
    assert step_of(folder / "checkpoints" / "last.ckpt") == 3, "the step under way when the signal came finished"
    add_callback(Callback())
    resume(tmp_path, fashion_root, folder, "trainer.max_epochs=2")
    resume(tmp_path, fashion_root, folder, "trainer.max_epochs=3")
    names = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert names[-1] == "last.ckpt" and len(names) == 2 and names[0].startswith("epoch_"), names
    assert step_of(folder / "checkpoints" / "last.ckpt") == 3 * STEPS_PER_EPOCH, "the newest step"
    rows = read_metrics(folder / "csv" / "metrics.csv")
    assert epochs_logged(rows, "val/acc_top1") == [0, 1, 2], "every epoch's validation once"
    assert epochs_logged(rows, "train/loss_epoch") == [0, 1, 2]
    assert column(rows, "train/loss_step") and len(column(rows, "train/loss_step")) == 3 * STEPS_PER_EPOCH


def test_case_3_a_signal_during_the_test_leaves_last_ckpt_unchanged(
    tmp_path: Path, fashion_root: Path, add_callback: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before: dict[str, bytes] = {}

    class Remember(SignalWhen):
        def on_test_start(self, trainer, module) -> None:
            before["last"] = last.read_bytes()

    add_callback(Remember("on_test_batch_start", lambda trainer, i: True))
    with pytest.raises(SystemExit) as stopped:
        run_train(tmp_path, fashion_root, "trainer.max_epochs=2", "test=true")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert last.read_bytes() == before["last"], "the test's weights are not saved as the last step"
    assert step_of(last) == 2 * STEPS_PER_EPOCH
    assert "Stopped by SIGTERM during the test; the checkpoints are unchanged" in caplog.text


def test_case_7_a_signal_during_validation_keeps_that_epochs_metrics(
    tmp_path: Path, fashion_root: Path, add_callback: Callable
) -> None:
    in_validation = SignalWhen(
        "on_validation_batch_start", lambda trainer, i: not trainer.sanity_checking and trainer.current_epoch == 0
    )
    add_callback(in_validation)
    with pytest.raises(SystemExit) as stopped:
        run_train(tmp_path, fashion_root, "trainer.max_epochs=2")
    assert stopped.value.code == 128 + signal.SIGTERM and in_validation.sent
    add_callback(Callback())
    folder = tmp_path / "run"
    resume(tmp_path, fashion_root, folder)
    rows = read_metrics(folder / "csv" / "metrics.csv")
    assert epochs_logged(rows, "val/acc_top1") == [0, 1]
    assert epochs_logged(rows, "train/loss_epoch") == [0, 1]
    assert len(column(rows, "train/loss_step")) == 2 * STEPS_PER_EPOCH


def test_case_7_an_empty_log_dir_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import compose_config

    for name in ("ALEXNET_LOG_DIR", "ALEXNET_DATA_DIR"):
        monkeypatch.setenv(name, "")
    cfg = compose_config("train", ["paths.root_dir=/work/here", "paths.output_dir=/work/here/run"])
    assert (cfg.paths.log_dir, cfg.paths.data_dir) == ("outputs", "/work/here/data")
    monkeypatch.setenv("ALEXNET_LOG_DIR", "/scratch/runs")
    assert compose_config("train", ["paths.root_dir=/w", "paths.output_dir=/w/r"]).paths.log_dir == "/scratch/runs"


def test_case_2_a_copied_run_folder_resumes_into_itself_and_leaves_the_original_as_it_was(
    tmp_path: Path, fashion_root: Path, finished_run: Path, copied_run: Path
) -> None:
    original = digest(finished_run)
    resume(tmp_path, fashion_root, copied_run, "trainer.max_epochs=2")
    assert digest(finished_run) == original, "the original folder is byte-identical"
    assert step_of(copied_run / "checkpoints" / "last.ckpt") == 2 * STEPS_PER_EPOCH
    saved = (copied_run / "config_resolved.yaml").read_text()
    assert str(finished_run) not in saved and f"output_dir: {copied_run}\n" in saved
    assert epochs_logged(read_metrics(copied_run / "csv" / "metrics.csv"), "val/acc_top1") == [0, 1]
    best = [p.name for p in (copied_run / "checkpoints").glob("epoch_*.ckpt")]
    assert len(best) == 1, f"the copy tracks its own best checkpoint: {best}"


def test_case_4_a_resume_that_changes_the_net_is_refused_before_anything_is_written(
    tmp_path: Path, fashion_root: Path, copied_run: Path
) -> None:
    before = digest(copied_run)
    with pytest.raises(UserError, match=r"model.groups=1: a resumed run keeps its net, .*the run has model.groups=2"):
        resume(tmp_path, fashion_root, copied_run, "model.groups=1")
    assert digest(copied_run) == before, "nothing written: the config keeps groups=2"
    resume(tmp_path, fashion_root, copied_run, "trainer.max_epochs=2")  # a later plain resume works
    assert step_of(copied_run / "checkpoints" / "last.ckpt") == 2 * STEPS_PER_EPOCH


def test_case_6_a_resume_may_change_top_level_values_but_not_groups(
    tmp_path: Path, fashion_root: Path, copied_run: Path
) -> None:
    resume(tmp_path, fashion_root, copied_run, "trainer.max_epochs=2", "test=true", "seed=7")
    saved = (copied_run / "config_resolved.yaml").read_text()
    assert "\ntest: true\n" in saved and "\nseed: 7\n" in saved
    assert column(read_metrics(copied_run / "csv" / "metrics.csv"), "test/acc_top1"), "the test ran"
    for group in ("model=paper", "experiment=d2l_fashion_mnist", "optimizer=sgd"):
        with pytest.raises(UserError, match=f"{group.split('=')[0]}: a resumed run keeps its configuration"):
            resume(tmp_path, fashion_root, copied_run, group)


def test_case_5_a_new_run_in_a_folder_that_holds_one_is_refused(
    tmp_path: Path, fashion_root: Path, copied_run: Path
) -> None:
    before = digest(copied_run)
    with pytest.raises(UserError, match=f"{copied_run} already holds a run .*alexnet-train resume={copied_run}"):
        run_train(tmp_path, fashion_root, f"paths.output_dir={copied_run}")
    assert digest(copied_run) == before


def test_case_5_a_lock_left_by_a_dead_process_does_not_block(
    tmp_path: Path, fashion_root: Path, copied_run: Path
) -> None:
    (copied_run / ".lock").write_text("4194305 a-node-that-rebooted\n")  # above Linux's largest pid: long dead
    resume(tmp_path, fashion_root, copied_run, "trainer.max_epochs=2")
    assert step_of(copied_run / "checkpoints" / "last.ckpt") == 2 * STEPS_PER_EPOCH


def test_case_5_a_killed_run_s_forked_children_do_not_keep_its_folder_locked(tmp_path: Path) -> None:
    """A run's DataLoader workers are forked while it holds the lock and can outlive a SIGKILL by seconds."""
    import sys

    from alexnet.run.folder import claiming, lock_holder

    folder = tmp_path / "run"
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from alexnet.run.folder import claiming\n"
        "with claiming(Path(sys.argv[1]), None, None):\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        os.close(1), os.close(2)\n"  # let the test read the parent's output as soon as it dies
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    print(child, flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    child = int(killed.stdout)
    try:
        assert Path(f"/proc/{child}").exists(), "the forked child is still alive"
        assert lock_holder(folder) is None
        with claiming(folder, None, None) as claim:
            claim.begin()
            assert (folder / LOCK_FILE).read_text().startswith(f"{os.getpid()} ")
    finally:
        os.kill(child, signal.SIGKILL)


@pytest.mark.slow
def test_case_5_a_second_writer_is_refused_at_once_naming_the_first(tmp_path: Path, fashion_root: Path) -> None:
    folder = tmp_path / "run"
    args = [f"data.root={fashion_root}", "data.download=false", "data.val_size=40", *TINY, "trainer.max_steps=100000",
            "trainer.limit_train_batches=null", "callbacks.checkpoint.every_n_train_steps=2",
            "++callbacks.progress_bar=null", f"hydra.run.dir={folder}"]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    env = {**os.environ, "WANDB_MODE": "offline"}
    first = subprocess.Popen([str(BIN / "alexnet-train"), *args], cwd=tmp_path, env=env, stdout=log, stderr=log)
    try:
        while not (folder / "checkpoints" / "last.ckpt").exists():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            time.sleep(0.2)
        hydra_before = sorted(p.name for p in (folder / ".hydra").iterdir())
        second = run_main("alexnet-train", f"resume={folder}", "trainer.max_steps=100001", cwd=tmp_path)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"is being written by process {first.pid} on " in second.stderr, second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        assert sorted(p.name for p in (folder / ".hydra").iterdir()) == hydra_before, "the refused run wrote nothing"
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=300) == 128 + signal.SIGTERM


def test_cfg_job_of_a_resume_prints_the_config_the_resumed_run_will_use(tmp_path: Path, copied_run: Path) -> None:
    before = digest(copied_run)
    shown = run_main("alexnet-train", "--cfg", "job", f"resume={copied_run}", "trainer.max_epochs=5", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "channels:\n  - 8\n  - 16\n" in shown.stdout and "groups: 2\n" in shown.stdout, "the run's net"
    assert "max_epochs: 5\n" in shown.stdout and f"output_dir: {copied_run}\n" in shown.stdout
    assert f"resume: {copied_run}\n" in shown.stdout and "ckpt_path: " in shown.stdout
    assert digest(copied_run) == before and not (tmp_path / "outputs").exists(), "printing writes nothing"


def test_a_refused_resume_through_the_command_writes_nothing(tmp_path: Path, copied_run: Path) -> None:
    """Hydra writes nothing into a run folder (the run writes .hydra/ and its log once its checks pass), and the
    lock file names a new holder only then: a refused resume leaves every byte, the lock and the log included."""
    (copied_run / "train.log").write_text("the run's log\n")
    before = digest(copied_run)
    refused = run_main("alexnet-train", f"resume={copied_run}", "model.groups=1", cwd=tmp_path)
    assert refused.returncode == 2 and "a resumed run keeps its net" in refused.stderr, refused.stderr[-2000:]
    assert digest(copied_run) == before, "no .hydra/resumed_*, no log line, no new lock holder"


def test_a_refused_new_run_leaves_no_folder(tmp_path: Path, fashion_root: Path) -> None:
    for bad in ("test_weights=final", f"ckpt_path={tmp_path / 'missing.ckpt'}"):  # the rules; the run's own checks
        refused = run_main("alexnet-train", f"paths.log_dir={tmp_path / 'out'}", "data.download=false", bad,
                           *TINY, cwd=tmp_path)  # fmt: skip
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert not list((tmp_path / "out" / "runs").glob("*")), f"{bad}: the refused run left its folder"


def test_a_second_sweep_into_the_same_folder_is_refused_whole(tmp_path: Path, fashion_root: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", f"hydra.sweep.dir={sweep}", f"data.root={fashion_root}", "data.download=false",
            "data.val_size=40", *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1", "model.lrn=true,false"]  # fmt: skip
    first = run_main("alexnet-train", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = digest(sweep)
    assert {"0/config_resolved.yaml", "1/config_resolved.yaml", "0/.hydra/overrides.yaml"} <= set(before)
    second = run_main("alexnet-train", *args, cwd=tmp_path)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"{sweep} already holds files" in second.stderr
    assert digest(sweep) == before, "no job of the second sweep started"
