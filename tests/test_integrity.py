"""Files read back are checked, and faults after training has begun end in one message: a damaged checkpoint is
named as damaged with the intact ones listed, a full disk or a removed run folder stops the run with the last good
checkpoint named and nothing partial left, a folder that cannot be written is found before training."""

from __future__ import annotations

import errno
import fcntl
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from alexnet.config.invocation import Invocation
from alexnet.models.checkpoint_files import CHECKSUM_KEY, intact_checkpoints, is_intact
from alexnet.run import folder as run_folder
from alexnet.run import training
from conftest import run_main, train_config

TINY = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.batch_size=8",
        "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.log_every_n_steps=1", "test=false"]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> Path:
    """A finished one-epoch run: checkpoints/last.ckpt and the best epoch_000.ckpt."""
    tmp = tmp_path_factory.mktemp("integrity")
    training.train(train_config(tmp, fashion_root, [*TINY, "trainer.max_epochs=1"]), Invocation())
    return tmp / "run"


@pytest.fixture
def copy(tmp_path: Path, finished: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(finished, folder)
    return folder


def overwrite_inside_a_weight(path: Path) -> None:
    """Bytes overwritten in the middle of the largest tensor's data, as a bad disk or a broken copy leaves them: the
    zip's structure stays whole (torch reads it without complaint)."""
    with zipfile.ZipFile(path) as archive:
        entry = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with path.open("r+b") as file:
        file.seek(entry.header_offset + 26)
        name_length, extra_length = (int.from_bytes(file.read(2), "little") for _ in range(2))
        file.seek(entry.header_offset + 30 + name_length + extra_length + entry.file_size // 2)
        file.write(bytes(range(7, 71)))


def test_every_checkpoint_the_run_writes_is_sealed_and_reads_back_intact(finished: Path) -> None:
    for path in (finished / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert len(checkpoint[CHECKSUM_KEY]) == 64 and is_intact(checkpoint)
        checkpoint["global_step"] += 1
        assert not is_intact(checkpoint), "any change of content breaks the seal"


def test_a_checkpoint_with_overwritten_bytes_is_named_as_damaged(tmp_path: Path, copy: Path) -> None:
    last, best = copy / "checkpoints" / "last.ckpt", copy / "checkpoints" / "epoch_000.ckpt"
    overwrite_inside_a_weight(last)
    torch.load(last, map_location="cpu", weights_only=True)  # loads as if nothing were wrong
    evaluated = run_main("alexnet-eval", f"ckpt_path={last}", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert evaluated.returncode == 2, evaluated.stderr[-2000:]
    assert f"ckpt_path={last} is damaged: its content does not match the checksum" in evaluated.stderr
    assert f"Intact checkpoints beside it: {best} (step 3)" in evaluated.stderr
    resumed = run_main("alexnet-train", f"resume={copy}", cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    assert f"{last} is damaged (its content does not match its checksum). Intact checkpoints of this run: {best}" in (
        resumed.stderr
    )
    assert intact_checkpoints([last, best]) == [(best, 3)], "a NaN message names only intact checkpoints"


def test_a_checkpoint_fits_the_disk_estimate(finished: Path, fashion_root: Path, tmp_path: Path) -> None:
    run = training.build(train_config(tmp_path, fashion_root, TINY))
    size = (finished / "checkpoints" / "last.ckpt").stat().st_size
    estimate = training.checkpoint_size(run.module, train_config(tmp_path, fashion_root, TINY))
    assert size <= estimate, "the preflight's estimate is an upper bound of a checkpoint's size"


class Then(Callback):
    """Calls ``act`` at the start of training epoch ``epoch``."""

    def __init__(self, epoch: int, act) -> None:
        self.epoch, self.act = epoch, act

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == self.epoch:
            self.act()


def run_with(monkeypatch: pytest.MonkeyPatch, callback: Callback, tmp_path: Path, *args: str):
    build = training.build

    def build_with(cfg, multirun=False):
        run = build(cfg, multirun)
        run.trainer.callbacks.insert(0, callback)
        return run

    monkeypatch.setattr(training, "build", build_with)
    return run_main("alexnet-train", *args, cwd=tmp_path)


def test_a_full_disk_during_a_save_is_one_message_and_leaves_nothing_partial(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "run"
    save = TorchCheckpointIO.save_checkpoint
    full = {"now": False}

    def filling(self, checkpoint, path, storage_options=None):
        if full["now"]:
            Path(path).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", filling)
    args = [f"hydra.run.dir={folder}", f"data.root={fashion_root}", "data.download=false", "data.val_size=40",
            *TINY, "trainer.max_epochs=3"]  # fmt: skip
    ran = run_with(monkeypatch, Then(1, lambda: full.update(now=True)), tmp_path, *args)
    assert ran.returncode == 2, ran.stderr[-2000:]
    last = folder / "checkpoints" / "last.ckpt"
    assert f"Cannot save the checkpoint {last}: the disk is full" in ran.stderr
    assert f"intact checkpoints: {folder / 'checkpoints' / 'epoch_000.ckpt'} (step 3), {last} (step 3)" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not list(folder.rglob("*.partial")) and not list(folder.rglob(".last.ckpt.pending")), "nothing partial"


def test_a_run_folder_removed_during_training_is_one_message(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "run"
    args = [f"hydra.run.dir={folder}", f"data.root={fashion_root}", "data.download=false", "data.val_size=40",
            *TINY, "trainer.max_epochs=3"]  # fmt: skip
    ran = run_with(monkeypatch, Then(1, lambda: shutil.rmtree(folder)), tmp_path, *args)
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert "the run folder was removed or moved" in ran.stderr or "no longer exists" in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr and not folder.exists(), "nothing is made anew in its place"


def test_an_unwritable_checkpoint_folder_is_found_before_training(tmp_path: Path, fashion_root: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    ran = run_main("alexnet-train", f"paths.log_dir={tmp_path / 'out'}", f"data.root={fashion_root}",
                   "data.download=false", "data.val_size=40", *TINY, f"callbacks.checkpoint.dirpath={blocker}/ckpts",
                   cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert f"callbacks.ResumePoint.dirpath={blocker}/ckpts cannot be written" in ran.stderr
    assert not list((tmp_path / "out" / "runs").glob("*")), "refused before anything was written"


def test_a_filesystem_without_locks_is_named_and_lock_false_runs(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(fd, operation, *args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_folder.fcntl, "lockf", no_locks)
    args = [f"paths.log_dir={tmp_path / 'out'}", f"data.root={fashion_root}", "data.download=false",
            "data.val_size=40", *TINY, "trainer.max_epochs=1"]  # fmt: skip
    refused = run_main("alexnet-train", *args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "does not support POSIX record locks (No locks available)" in refused.stderr
    assert "lock=false" in refused.stderr and not list((tmp_path / "out" / "runs").glob("*"))
    assert run_main("alexnet-train", *args, "lock=false", cwd=tmp_path).returncode == 0
    assert fcntl.lockf is no_locks


def test_resuming_on_data_whose_classes_differ_is_refused(tmp_path: Path, imagenet_root: Path) -> None:
    """Same number of class folders, one renamed: every label index would silently mean another class."""
    net = ["data=imagenet", "data.num_classes=3", "data.num_workers=0", "data.pin_memory=false", "data.test_crops=1",
           "model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.batch_size=4",
           "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
           "test=false"]  # fmt: skip
    training.train(train_config(tmp_path, imagenet_root, net, fashion=False), Invocation())
    renamed = tmp_path / "renamed"
    shutil.copytree(imagenet_root, renamed)
    for split in ("train", "val"):
        (renamed / split / "n01440764").rename(renamed / split / "n09999999")
    folder = tmp_path / "run"
    ran = run_main("alexnet-train", f"resume={folder}", f"data.root={renamed}", "trainer.max_epochs=2", cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert "The checkpoint was trained on other classes than data.root=" in ran.stderr
    assert "not in the data: n01440764 tench" in ran.stderr


def test_a_mid_epoch_resume_with_another_batch_size_is_refused(tmp_path: Path, fashion_root: Path) -> None:
    settings = [*TINY, "trainer.max_epochs=2", "callbacks.checkpoint.every_n_train_steps=1", "trainer.max_steps=2"]
    training.train(train_config(tmp_path, fashion_root, settings), Invocation())  # stops mid-epoch, at step 2
    folder = tmp_path / "run"
    ran = run_main("alexnet-train", f"resume={folder}", "data.batch_size=4", "trainer.max_steps=-1", cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert "data.batch_size=4: the run stopped in the middle of epoch 0 (step 2, after 2 batches)" in ran.stderr
    assert "Resume with data.batch_size=8" in ran.stderr
    same = run_main("alexnet-train", f"resume={folder}", "trainer.max_steps=-1", cwd=tmp_path)
    assert same.returncode == 0, same.stderr[-2000:]


def test_eval_refuses_a_data_option_other_than_the_checkpoints(tmp_path: Path, finished: Path) -> None:
    checkpoint = finished / "checkpoints" / "last.ckpt"
    ran = run_main(
        "alexnet-eval", f"ckpt_path={checkpoint}", "data=imagenet", f"paths.log_dir={tmp_path}", cwd=tmp_path
    )
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert "the checkpoint's net was trained on FashionMNISTDataModule data, not ImageNetDataModule" in ran.stderr
    same = run_main("alexnet-eval", f"ckpt_path={checkpoint}", "data=fashion_mnist", f"paths.log_dir={tmp_path}",
                    cwd=tmp_path)  # fmt: skip
    assert same.returncode == 0, same.stderr[-2000:]


def cut_chunk(chunk: Path) -> Path:
    chunk.write_bytes(chunk.read_bytes()[:-500])
    return chunk


def remove_chunk(chunk: Path) -> Path:
    chunk.unlink()
    return chunk


def garble_an_image(chunk: Path) -> Path:
    """The same size, the header intact, but the first patch's JPEG bytes overwritten after its SOI marker."""
    data = bytearray(chunk.read_bytes())
    start = data.index(b"\xff\xd8")
    data[start + 2 : start + 400] = bytes(398)
    chunk.write_bytes(bytes(data))
    return chunk


def cut_the_index(chunk: Path) -> Path:
    index = chunk.parent / "index.json"
    index.write_text(index.read_text()[:200])
    return index


@pytest.mark.parametrize(
    ("damage", "workers", "what"),
    [
        (remove_chunk, 0, "this chunk is missing"),
        (cut_chunk, 0, "this chunk holds"),
        (garble_an_image, 1, "item 0 is not a 256x256 JPEG patch"),
        (cut_the_index, 0, "it cannot be read as litdata's chunk index"),
    ],
    ids=["missing", "cut", "garbled-in-a-worker", "cut-index"],
)
def test_a_damaged_prepared_chunk_is_named_with_alexnet_prepare(
    tmp_path: Path, prepared_jpeg: Path, damage, workers: int, what: str
) -> None:
    prepared = shutil.copytree(prepared_jpeg, tmp_path / "prepared")
    named = damage(next((prepared / "train").glob("chunk-*.bin")))
    ran = run_main("alexnet-train", "data=imagenet_prepared", f"data.root={prepared}", "data.num_classes=3",
                   f"data.num_workers={workers}", "data.pin_memory=false", "data.decode=cpu", *TINY,
                   "trainer.max_epochs=1", f"paths.log_dir={tmp_path}", cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert f"error: {named}: {what}" in ran.stderr and "alexnet-prepare" in ran.stderr, ran.stderr[-2000:]
    assert "Traceback" not in ran.stderr and "Original" not in ran.stderr
