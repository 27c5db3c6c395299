"""Fine-tuning on your own images: a 1000-class torchvision-format state_dict into a 3-class net on a folder without
val/ (frozen features stay the file's; the split is the same on resume, in alexnet-eval and alexnet-predict names
the folders), frozen-then-unfrozen features at the lower rate, and fine-tuning beating training from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from alexnet.models.alexnet import AlexNet, net_weights
from alexnet.run.build import build
from conftest import TINY_TORCHVISION, column, compose_config, make_photo_folder, read_metrics, run_main, train_config

# model=torchvision, shrunk
TINY = {"channels": [8, 16, 16, 16, 16], "input_size": 67, "hidden_size": 32, "groups": 1, "lrn": False,
        "dropout_position": "before", "adaptive_pool": 6, "init": "default"}  # fmt: skip
CLASSES = ["face", "jacket", "sky"]


def torchvision_format_weights(path: Path, num_classes: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with torchvision alexnet()'s names (features.0 ... classifier.6) and 1000 classes."""
    torch.manual_seed(seed)
    state = AlexNet(num_classes=num_classes, **TINY).state_dict()
    torch.save(state, path)
    return state


def finetune_run(tmp_path: Path, root: Path, weights: Path, *overrides: str) -> list[str]:
    return ["data=image_folder", f"data.root={root}", *TINY_TORCHVISION, f"model.weights={weights}",
            "data.batch_size=4", "trainer=cpu", "logger=csv", "trainer.log_every_n_steps=1",
            "++callbacks.progress_bar=null", f"paths.log_dir={tmp_path}", *overrides]  # fmt: skip


def test_a_1000_class_file_fine_tunes_into_three_classes_and_keeps_its_split(tmp_path: Path) -> None:
    root = make_photo_folder(tmp_path / "photos", CLASSES, 10)
    weights = tmp_path / "torchvision_1000.pth"
    state = torchvision_format_weights(weights)
    run = tmp_path / "run"
    args = finetune_run(tmp_path, root, weights, "module.freeze_features_epochs=-1", f"hydra.run.dir={run}",
                        "test=false")  # fmt: skip
    ran = run_main("alexnet-train", *args, "trainer.max_epochs=1", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "initialised classifier.6 anew (3 classes here, 1000 in the weights)" in ran.stdout  # the log
    split = json.loads((run / "data_split.json").read_text())
    assert (split["val_size"], split["split_seed"], len(split["val"])) == (0.2, 42, 6)  # 2 of each class's 10
    assert sorted(Path(p).parent.name for p in split["val"]) == sorted(CLASSES * 2)

    make_photo_folder(root, CLASSES, 4, seed=1, start=10)  # photos added since: a fresh split would differ
    # resume= and the new epoch count alone: the run's own config (weights, freezing, data) comes from its folder.
    ran = run_main("alexnet-train", f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1
    net = net_weights(checkpoint["state_dict"])
    frozen = [k for k in state if k.startswith("features.")]
    assert len(frozen) == 10 and all(torch.equal(net[k], state[k]) for k in frozen)  # every frozen parameter
    assert not torch.equal(net["classifier.4.weight"], state["classifier.4.weight"])  # the rest trained
    assert net["classifier.6.weight"].shape == (3, 32) and net["classifier.6.bias"].shape == (3,)
    assert checkpoint["ImageFolderDataModule"]["held_out"] == split["val"]
    assert json.loads((run / "data_split.json").read_text()) == split  # the resumed run's split is the first's
    assert checkpoint["class_names"] == CLASSES

    last_val_loss = column(read_metrics(run / "csv" / "metrics.csv"), "val/loss")[-1]
    ckpt = run / "checkpoints" / "last.ckpt"
    ran = run_main("alexnet-eval", f"ckpt_path={ckpt}", f"paths.log_dir={tmp_path}", "trainer.accelerator=cpu",
                   "data.num_workers=0", cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    evaluated = json.loads(next((tmp_path / "eval").rglob("eval.json")).read_text())
    # The same 6 held-out images as the run validated on (a split of the grown folder would hold out 8).
    assert evaluated["loss"] == pytest.approx(last_val_loss, rel=1e-5)

    ran = run_main("alexnet-predict", f"ckpt_path={ckpt}", f"images=[{root / 'sky'}]", "top_k=3", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    predicted = [line.split()[-1] for line in ran.stdout.splitlines() if line.startswith("  ")]
    assert len(predicted) == 3 * 14 and set(predicted) == set(CLASSES)  # the folders' names


class StepRecorder(L.Callback):
    """The features' and head's parameters and gradients around every optimizer step, per epoch."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.steps: list[tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.before = {n: p.detach().clone() for n, p in pl_module.net.named_parameters()}
        self.grads = {n: p.grad.clone() for n, p in pl_module.net.named_parameters() if p.grad is not None}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        after = {n: p.detach().clone() for n, p in pl_module.net.named_parameters()}
        self.steps.append((trainer.current_epoch, self.before, self.grads, after))


def test_features_frozen_for_an_epoch_then_train_at_the_lower_rate(tmp_path: Path) -> None:
    root = make_photo_folder(tmp_path / "photos", CLASSES, 6)
    weights = tmp_path / "torchvision_1000.pth"
    state = torchvision_format_weights(weights)
    cfg = train_config(tmp_path, root, [*finetune_run(tmp_path, root, weights)[:-1], "trainer.max_epochs=2",
                                        "module.freeze_features_epochs=1", "module.features_lr_scale=0.1",
                                        "optimizer.lr=0.05", "optimizer.momentum=0", "optimizer.weight_decay=0",
                                        "scheduler=none", "test=false", "trainer.limit_train_batches=2"],
                       fashion=False)  # fmt: skip
    run = build(cfg)
    recorder = StepRecorder()
    run.trainer.callbacks.append(recorder)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    groups = run.trainer.optimizers[0].param_groups
    assert [(g["name"], g["lr"]) for g in groups] == [("features", pytest.approx(0.005)), ("head", 0.05)]
    assert [epoch for epoch, *_ in recorder.steps] == [0, 0, 1, 1]
    features = [k for k in state if k.startswith("features.")]
    for epoch, before, grads, after in recorder.steps:
        for name in features:
            if epoch == 0:  # frozen: the file's values after every step of epoch 0
                assert torch.equal(after[name], state[name]), name
            else:  # unfrozen: plain SGD at 0.1 x the head's rate
                torch.testing.assert_close(after[name], before[name] - 0.005 * grads[name])
        torch.testing.assert_close(after["classifier.6.weight"], before["classifier.6.weight"]
                                   - 0.05 * grads["classifier.6.weight"])  # fmt: skip
    final = dict(run.module.net.named_parameters())
    assert not torch.equal(final["features.0.weight"].detach(), state["features.0.weight"])
    logged = read_metrics(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")
    assert column(logged, "lr-SGD/features")[-1] == pytest.approx(0.005)
    assert column(logged, "lr-SGD/head")[-1] == pytest.approx(0.05)


def test_the_finetune_experiment_is_the_recipe(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=finetune", f"data.root={tmp_path}", "paths.root_dir=/tmp",
                                   "paths.output_dir=/tmp/run"])  # fmt: skip
    assert (cfg.model.weights, cfg.model.input_size) == ("IMAGENET1K_V1", 224)
    assert cfg.model.channels == [64, 192, 384, 256, 256]
    assert (cfg.module.freeze_features_epochs, cfg.module.features_lr_scale) == (3, 0.1)
    assert cfg.data._target_ == "alexnet.data.image_folder.ImageFolderDataModule"
    assert cfg.data.normalization == "per_channel" and cfg.optimizer.lr == 0.01


@pytest.mark.slow
def test_fine_tuning_beats_training_from_scratch_in_the_same_steps(tmp_path: Path) -> None:
    """Features learnt first on other classes of real photos (stars, stripes, cap, ribbons, shirt) help a new task
    (face, jacket, sky): the same steps from those features reach a higher validation top-1 and a lower loss
    than from a random initialisation."""
    others = make_photo_folder(tmp_path / "others", ["stars", "stripes", "cap", "ribbons", "shirt"], 16, seed=3)
    task = make_photo_folder(tmp_path / "task", CLASSES, 16, seed=4)
    common = ["data=image_folder", *TINY_TORCHVISION, "model.channels=[16,32,48,32,32]", "model.hidden_size=64",
              "data.batch_size=4", "data.val_size=0.25", "optimizer.lr=0.03", "trainer=cpu", "logger=csv",
              "test=false", "++callbacks.progress_bar=null", f"paths.log_dir={tmp_path}"]  # fmt: skip

    def final_val(name: str, root: Path, epochs: int, *overrides: str) -> tuple[float, float]:
        folder = tmp_path / name
        ran = run_main("alexnet-train", *common, f"data.root={root}", f"trainer.max_epochs={epochs}",
                       f"hydra.run.dir={folder}", *overrides, cwd=tmp_path)  # fmt: skip
        assert ran.returncode == 0, ran.stderr[-3000:]
        rows = read_metrics(folder / "csv" / "metrics.csv")
        return column(rows, "val/acc_top1")[-1], column(rows, "val/loss")[-1]

    final_val("pretrain", others, 3)
    pretrained = tmp_path / "pretrain" / "checkpoints" / "last.ckpt"  # a Lightning checkpoint works as weights
    tuned_top1, tuned_loss = final_val("finetune", task, 2, f"model.weights={pretrained}",
                                       "module.freeze_features_epochs=1", "module.features_lr_scale=0.1")  # fmt: skip
    scratch_top1, scratch_loss = final_val("scratch", task, 2)
    assert tuned_top1 > scratch_top1 and tuned_loss < scratch_loss, (tuned_top1, scratch_top1, tuned_loss, scratch_loss)
