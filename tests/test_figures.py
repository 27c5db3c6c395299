"""alexnet-figures: the paper's figures from a Fashion-MNIST and an ImageNet-folder checkpoint; the FC7 search."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from alexnet.analysis.fc7_neighbours import fc7, nearest, training_features
from alexnet.analysis.paper_figures import FILES
from alexnet.analysis.run_metrics import read_csv_metrics
from alexnet.analysis.scored_net import net_from_checkpoint
from alexnet.models.checkpoint_files import read_checkpoint, run_config
from alexnet.run.training import train
from conftest import assert_visible, run_cli, train_config

TINY = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32", "data.batch_size=8",
        "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.log_every_n_steps=1",
        "test=false"]  # fmt: skip


@pytest.fixture(scope="module")
def fashion_checkpoint(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> Path:
    tmp = tmp_path_factory.mktemp("fashion_run")
    # two towers, grey replicated to RGB; xavier init: the paper's bias-1 init makes this tiny net's FC7 the same
    # for every image
    train(train_config(tmp, fashion_root, [*TINY, "model=paper", "model.init=xavier"]))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def imagenet_checkpoint(tmp_path_factory: pytest.TempPathFactory, imagenet_root: Path) -> Path:
    tmp = tmp_path_factory.mktemp("imagenet_run")
    settings = ["data=imagenet", "model=paper", "data.num_classes=3", "data.resize_size=80", "data.num_workers=0",
                "data.pin_memory=false", "logger=tensorboard", "model.init=xavier"]  # fmt: skip
    train(train_config(tmp, imagenet_root, [*TINY, *settings, "data.batch_size=4"], fashion=False))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["fashion", "imagenet"])
def test_figures_command_writes_the_four_pictures(dataset: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    checkpoint: Path = request.getfixturevalue(f"{dataset}_checkpoint")
    figures = checkpoint.parent.parent / "figures"
    result = run_cli("alexnet-figures", f"ckpt_path={checkpoint}", "examples=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in figures.glob("*.png")) == sorted(FILES.values())
    for name in FILES.values():
        assert_visible(figures / name)
    assert len(list(figures.glob("fc7_train_*_indices.npy"))) == 1, "the training features are cached"


def test_the_nearest_training_images_of_a_training_image_start_with_itself(
    fashion_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = read_checkpoint(fashion_checkpoint)
    net = net_from_checkpoint(checkpoint, fashion_checkpoint)
    data_cfg = run_config(checkpoint, fashion_checkpoint).data
    data = instantiate(data_cfg, input_size=net.input_size, channels=net.in_channels)
    data.setup("fit")
    train_set = data.dataset("train")
    cached = training_features(net, train_set, data.model_input, tmp_path, batch_size=64)
    assert cached.features.shape == (len(train_set), 32) and not cached.reused
    picked = [0, 17, 200]
    images = torch.stack([train_set[i][0] for i in picked])
    found, distances = nearest(cached, fc7(net, data.model_input, images), k=6)
    assert found.shape == distances.shape == (3, 6)
    assert found[:, 0].tolist() == picked and distances[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert (distances[:, 1:] > 0).all() and (distances.diff(dim=1) >= 0).all(), "nearest first"

    assert training_features(net, train_set, data.model_input, tmp_path).reused
    with torch.no_grad():
        net.features[0].weight[0, 0, 0, 0] += 1.0
    assert not training_features(net, train_set, data.model_input, tmp_path, limit=50).reused, "weights changed"


def test_learning_rate_changes_are_placed_between_epochs(tmp_path: Path) -> None:
    # The learning-rate monitor logs at each epoch's start; validation at its end (steps 9, 19, 29, 39).
    rows = [{"step": 0, "lr-SGD": 0.01}, {"step": 9, "epoch": 0, "val/loss": 2.0},
            {"step": 10, "lr-SGD": 0.01}, {"step": 19, "epoch": 1, "val/loss": 1.5},
            {"step": 20, "lr-SGD": 0.001}, {"step": 29, "epoch": 2, "val/loss": 1.4},
            {"step": 30, "lr-SGD": 0.0001}, {"step": 39, "epoch": 3, "val/loss": 1.3}]  # fmt: skip
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["epoch", "lr-SGD", "step", "val/loss"])
        writer.writeheader()
        writer.writerows(rows)
    metrics = read_csv_metrics(path)
    assert metrics.learning_rate_changes() == [(2, 0.01, 0.001), (3, 0.001, 0.0001)]
    assert metrics.epochs() == 4 and metrics.per_epoch("val/loss") == [(0, 2.0), (1, 1.5), (2, 1.4), (3, 1.3)]
