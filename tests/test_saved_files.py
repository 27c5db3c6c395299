"""Files the project reads back are data, never code: a checkpoint's saved run config and a run folder's
config_resolved.yaml name only classes this project ships, whoever wrote them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from alexnet.config.invocation import Invocation
from alexnet.models.checkpoint_files import seal
from alexnet.run.training import train
from conftest import run_main, train_config

TINY = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.batch_size=8",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.log_every_n_steps=1", "trainer.max_epochs=1", "test=false"]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> Path:
    tmp = tmp_path_factory.mktemp("saved_files")
    train(train_config(tmp, fashion_root, TINY), Invocation())
    return tmp / "run"


def payload(marker: Path) -> dict:
    """What an attacker puts in a saved config: a callable that is not one of the project's classes (here one that
    creates a file the moment it is called, so the test can see whether it ran)."""
    return {"_target_": "logging.FileHandler", "filename": str(marker)}


@pytest.fixture
def crafted_checkpoint(tmp_path: Path, finished: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    checkpoint = torch.load(finished / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["run_config"]["model"]["channels"] = payload(marker)  # instantiated recursively
    seal(checkpoint)  # whoever crafts a checkpoint can seal it too: the seal is no defence against a payload
    crafted = tmp_path / "shared.ckpt"
    torch.save(checkpoint, crafted)
    return crafted, marker


@pytest.fixture
def crafted_run(tmp_path: Path, finished: Path) -> tuple[Path, Path]:
    folder, marker = tmp_path / "shared_run", tmp_path / "marker"
    shutil.copytree(finished, folder)
    (folder / ".lock").unlink(missing_ok=True)
    record = folder / "config_resolved.yaml"
    saved = yaml.safe_load(record.read_text())
    saved["callbacks"]["evil"] = payload(marker)
    record.write_text(yaml.safe_dump(saved))
    return folder, marker


REFUSAL = "callbacks.evil._target_=logging.FileHandler is not a class this project ships"


def test_a_run_folder_naming_a_foreign_target_is_not_resumed(tmp_path: Path, crafted_run: tuple[Path, Path]) -> None:
    folder, marker = crafted_run
    ran = run_main("alexnet-train", f"resume={folder}", "trainer.max_epochs=2", cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert f"{folder / 'config_resolved.yaml'}: {REFUSAL}" in ran.stderr
    assert "Traceback" not in ran.stderr and not marker.exists()


@pytest.mark.parametrize("command", ["alexnet-eval", "alexnet-predict", "alexnet-figures"])
def test_a_checkpoint_naming_a_foreign_target_is_not_rebuilt(
    command: str, tmp_path: Path, crafted_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, marker = crafted_checkpoint
    image = tmp_path / "image.png"
    Image.new("L", (28, 28), 128).save(image)
    extra = [f"images=[{image}]"] if command == "alexnet-predict" else []
    ran = run_main(command, f"ckpt_path={checkpoint}", f"paths.log_dir={tmp_path}", *extra, cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr[-2000:]
    expected = f"{checkpoint} (its saved run config): model.channels._target_=logging.FileHandler is not a class"
    assert expected in ran.stderr, ran.stderr[-2000:]
    assert "Traceback" not in ran.stderr and not marker.exists()


def test_a_run_folder_whose_config_writes_elsewhere_is_not_resumed(
    tmp_path: Path, finished: Path, fashion_root: Path
) -> None:
    folder, elsewhere = tmp_path / "shared_run", tmp_path / "elsewhere"
    shutil.copytree(finished, folder)
    record = folder / "config_resolved.yaml"
    saved = yaml.safe_load(record.read_text())
    saved["callbacks"]["checkpoint"]["dirpath"] = str(elsewhere)
    record.write_text(yaml.safe_dump(saved))
    ran = run_main("alexnet-train", f"resume={folder}", "trainer.max_epochs=2", cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert f"callbacks.checkpoint.dirpath={elsewhere} lies outside the run folder" in ran.stderr
    assert not elsewhere.exists()


def test_an_interpolation_in_a_saved_config_is_refused_unresolved(tmp_path: Path, finished: Path) -> None:
    folder = tmp_path / "shared_run"
    shutil.copytree(finished, folder)
    made = tmp_path / "made_by_a_resolver" / "study.db"
    record = folder / "config_resolved.yaml"
    saved = yaml.safe_load(record.read_text())
    saved["paths"]["output_dir"] = f"${{alexnet.sqlite:{made}}}"  # the resolver creates the folder it is given
    record.write_text(yaml.safe_dump(saved))
    ran = run_main("alexnet-train", f"resume={folder}", cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr[-2000:]
    assert "paths.output_dir holds an interpolation" in ran.stderr
    assert not made.parent.exists()
