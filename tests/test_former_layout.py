"""Run folders and checkpoints written before the code moved into a folder per concern still resume, evaluate,
predict and draw figures: their saved configs name the flat layout's ``_target_`` paths, which
``alexnet.config.saved.FORMER_TARGETS`` maps to today's classes wherever a saved config is read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import get_object
from PIL import Image

from alexnet.config.invocation import Invocation
from alexnet.config.saved import FORMER_TARGETS
from alexnet.run.training import train
from conftest import assert_visible, read_metrics, run_main, train_config

# Every _target_ of this project that conf/ ever held before the move (`git log -p -- conf`), as saved configs
# and checkpoints name them.
FORMER_CONF_TARGETS = [
    "alexnet.bench.StepTimer",
    "alexnet.benchmark.StepTimer",
    "alexnet.csv_logger.ResumableCSVLogger",
    "alexnet.data.fashion_mnist.FashionMNISTDataModule",
    "alexnet.data.imagenet.ImageNetDataModule",
    "alexnet.data.imagenet_prepared.PreparedImageNetDataModule",
    "alexnet.faults.AtomicCheckpointIO",
    "alexnet.faults.StopOnSignal",
    "alexnet.faults.WritableOutputCheck",
    "alexnet.lit_alexnet.LitAlexNet",
    "alexnet.model.AlexNet",
    "alexnet.paper_plateau.PaperPlateau",
    "alexnet.paper_sgd.PaperSGD",
    "alexnet.run_folder.RunFolderCheck",
    "alexnet.throughput.ThroughputLogger",
    "alexnet.wandb_media.WandbMedia",
]
TINY = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.batch_size=8",
        "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.log_every_n_steps=1", "model.init=xavier"]  # fmt: skip
# Not the flat layout's: a later former name (StepTimer's, and the model configs' before the pretrained builder).
LATER = ("alexnet.bench.StepTimer", "alexnet.models.alexnet.AlexNet")
INVERSE = {new: old for old, new in FORMER_TARGETS.items() if old not in LATER}
INVERSE.pop("alexnet.run.folder.RunFolderCheck")
INVERSE["alexnet.run.folder.RunFolderCheck"] = "alexnet.run_folder.RunFolderCheck"


@pytest.mark.parametrize("target", [*FORMER_CONF_TARGETS, "alexnet.models.alexnet.AlexNet"])
def test_every_former_target_names_a_class_of_today(target: str) -> None:
    assert get_object(FORMER_TARGETS.get(target, target)).__module__.startswith("alexnet.")


def in_former_layout(value: object) -> object:
    """A config (plain dicts and lists) as the code before the move wrote it: every target by its former path."""
    if isinstance(value, dict):
        return {k: INVERSE.get(v, v) if k == "_target_" else in_former_layout(v) for k, v in value.items()}
    if isinstance(value, list):
        return [in_former_layout(v) for v in value]
    return value


@pytest.fixture(scope="module")
def former_run(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> Path:
    """A finished one-epoch run whose config_resolved.yaml, .hydra/ and checkpoints name the former targets."""
    tmp = tmp_path_factory.mktemp("former")
    train(train_config(tmp, fashion_root, [*TINY, "trainer.max_epochs=1"]), Invocation())
    folder = tmp / "run"
    record = folder / "config_resolved.yaml"
    saved = yaml.safe_load(record.read_text())
    record.write_text(yaml.safe_dump(in_former_layout(saved), sort_keys=False))
    assert "alexnet.lit_alexnet.LitAlexNet" in record.read_text()
    for path in (folder / "checkpoints").glob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        hparams["run_config"] = in_former_layout(hparams["run_config"])
        for key in ("content_sha256", "metric_states"):  # what this version adds to a checkpoint
            checkpoint.pop(key, None)
        torch.save(checkpoint, path)
    return folder


@pytest.fixture
def copy(tmp_path: Path, former_run: Path) -> Path:
    folder = tmp_path / "former_copy"
    shutil.copytree(former_run, folder)
    (folder / ".lock").unlink(missing_ok=True)
    return folder


def test_a_former_run_folder_resumes(copy: Path, tmp_path: Path, fashion_root: Path) -> None:
    overrides = (f"resume={copy}", "trainer.max_epochs=2")
    train(train_config(tmp_path, fashion_root, [*TINY, f"paths.output_dir={copy}", *overrides]), Invocation(overrides))
    step = torch.load(copy / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert step == 6, "two epochs of three steps"
    epochs = [int(float(r["epoch"])) for r in read_metrics(copy / "csv" / "metrics.csv") if r.get("val/acc_top1")]
    assert epochs == [0, 1]


def test_a_former_checkpoint_evaluates_predicts_and_draws_figures(copy: Path, tmp_path: Path) -> None:
    checkpoint = copy / "checkpoints" / "last.ckpt"
    evaluated = run_main("alexnet-eval", f"ckpt_path={checkpoint}", f"paths.log_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "top-1 error" in evaluated.stdout
    image = tmp_path / "shoe.png"
    Image.new("L", (28, 28), 200).save(image)
    predicted = run_main("alexnet-predict", f"ckpt_path={checkpoint}", f"images=[{image}]", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert str(image) in predicted.stdout and "%" in predicted.stdout
    drawn = run_main("alexnet-figures", f"ckpt_path={checkpoint}", "train_images=50", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    pictures = sorted((copy / "figures").glob("*.png"))
    assert [p.name for p in pictures] == [
        "conv1_kernels.png", "nearest_neighbours.png", "top5_predictions.png", "training_curves.png"
    ]  # fmt: skip
    for picture in pictures:
        assert_visible(picture)
