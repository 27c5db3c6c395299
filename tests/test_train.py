"""alexnet-train end to end on fixture data: every variant runs, a small run learns, outputs land where promised."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet.run.build import build
from alexnet.run.training import train
from conftest import column, make_fashion_mnist, read_metrics, train_config

TINY_NET = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32"]

VARIANTS = [
    ["model=paper"],
    ["model=paper", "model.input_size=224"],
    ["model=paper", "model.groups=1", "model.lrn=false"],
    ["model=paper", "model.overlapping_pool=false", "model.activation=tanh", "model.init=default"],
    ["model=paper", "model.in_channels=1", "model.dropout=0"],
    ["model=torchvision"],
    ["model=torchvision", "model.input_size=227", "model.lrn=true", "model.groups=2"],
    ["model=d2l"],
    ["model=d2l", "model.in_channels=3", "model.init=paper", "model.init_bias=0.1"],
    ["experiment=d2l_fashion_mnist"],
    ["experiment=ablation_fashion_mnist", "model.groups=2"],  # paper pixels, per-tower LRN, paper update rule
    ["scheduler=step", "module.label_smoothing=0.1"],
    ["scheduler=none", "logger=none", "callbacks=none"],
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: " ".join(o))
def test_fast_dev_run_every_variant(tmp_path: Path, fashion_root: Path, overrides: list[str]) -> None:
    # fast_dev_run still writes last.ckpt in Lightning 2.6; skipping it saves seconds per case.
    cfg = train_config(
        tmp_path,
        fashion_root,
        [
            "debug=fdr",
            "data.batch_size=2",
            "++callbacks.checkpoint=null",
            "++callbacks.best_checkpoint=null",
            *overrides,
        ],
    )
    run = build(cfg)
    before = [p.detach().clone() for p in run.module.parameters()]
    run.trainer.fit(run.module, datamodule=run.datamodule)
    after = list(run.module.parameters())
    assert run.trainer.fit_loop.epoch_loop.global_step == 1
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True)), "a real optimizer step ran"
    assert torch.isfinite(run.trainer.callback_metrics["val/loss"])
    assert set(run.trainer.callback_metrics) >= {"train/loss", "val/loss", "val/acc_top1", "val/acc_top5"}


@pytest.mark.slow
def test_short_run_learns_and_writes_its_outputs(tmp_path: Path) -> None:
    """A few epochs on a learnable synthetic set: loss falls, validation accuracy far above chance (0.1)."""
    root = make_fashion_mnist(tmp_path / "data", n_train=600, n_test=100, seed=1)
    cfg = train_config(
        tmp_path,
        root,
        [
            "model=d2l",
            "model.input_size=96",  # keeps the test fast; 224 px runs in the fast_dev_run tests above
            "data.batch_size=32",
            "data.val_size=100",
            "optimizer.lr=0.01",
            "trainer.max_epochs=4",
            "trainer.log_every_n_steps=1",
        ],
    )
    top1 = train(cfg)
    out = tmp_path / "run"
    rows = read_metrics(out / "csv" / "metrics.csv")
    losses = column(rows, "train/loss_epoch")
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0], losses
    assert top1 is not None and top1 >= 0.6, top1
    assert column(rows, "val/acc_top1")[-1] == pytest.approx(top1)
    assert column(rows, "test/acc_top1")[-1] >= 0.6
    assert column(rows, "lr-SGD")[0] == pytest.approx(0.01)
    assert (out / "config_resolved.yaml").read_text().count("${") == 0
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("epoch_") for name in checkpoints), checkpoints
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["run_config"]["model"]["input_size"] == 96
    assert saved["global_step"] == 4 * 16  # 4 epochs of ceil(500 / 32) batches: saved after the last step


def first_weights(tmp_path: Path, fashion_root: Path, seed: int) -> torch.Tensor:
    cfg = train_config(tmp_path, fashion_root, [f"seed={seed}", "model=d2l", "model.init=default"])
    return build(cfg).module.net.features[0].weight.detach().clone()


def test_seed_zero_is_honoured(tmp_path: Path, fashion_root: Path) -> None:
    zero, zero_again = first_weights(tmp_path, fashion_root, 0), first_weights(tmp_path, fashion_root, 0)
    assert torch.equal(zero, zero_again)
    assert not torch.equal(zero, first_weights(tmp_path, fashion_root, 1))


@pytest.mark.slow
def test_d2l_recipe_trains_on_every_image_and_tests_the_last_weights(tmp_path: Path) -> None:
    """d2l: all training images, the test set evaluated after every epoch, the final epoch's weights reported."""
    root = make_fashion_mnist(tmp_path / "data", n_train=96, n_test=40, seed=3)
    cfg = train_config(
        tmp_path,
        root,
        ["experiment=d2l_fashion_mnist", "data.download=false", *TINY_NET, "data.batch_size=32",
         "trainer.max_epochs=3", "trainer.log_every_n_steps=1", "optimizer.lr=0.05"],
        fashion=False,  # no data.val_size override: the recipe's own 0 applies
    )  # fmt: skip
    assert (cfg.data.val_size, cfg.test_weights, cfg.optimizer.momentum) == (0, "last", 0.0)
    train(cfg)
    out = tmp_path / "run"
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3 * 3  # 96 / 32
    rows = read_metrics(out / "csv" / "metrics.csv")
    val_loss, test_loss = column(rows, "val/loss"), column(rows, "test/loss")
    assert len(val_loss) == 3 and len(test_loss) == 1
    # Validation ran on the test set, so testing the final weights repeats the last validation exactly...
    assert test_loss[0] == pytest.approx(val_loss[-1], rel=1e-6)
    assert column(rows, "test/acc_top1")[0] == pytest.approx(column(rows, "val/acc_top1")[-1])
    # ...and not the best epoch's (a checkpoint chosen on the test set), which differs here.
    (best,) = (out / "checkpoints").glob("epoch_*.ckpt")
    assert best.name != "epoch_002.ckpt", "the last epoch is not the best one in this run, so the choice shows"
