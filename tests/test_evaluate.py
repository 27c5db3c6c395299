"""alexnet-eval and alexnet-predict on checkpoints trained here, and torchvision weights via model.weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from alexnet.analysis.scored_net import net_from_checkpoint
from alexnet.analysis.scoring import evaluate, predict
from alexnet.errors import UserError, find_user_error
from alexnet.models.alexnet import AlexNet, ArchitectureError
from alexnet.run.training import train
from conftest import WNIDS, compose_config, run_cli, run_main, train_config

SMALL = ["model=paper", "model.input_size=96", "data.resize_size=110", "data.num_classes=3", "data.batch_size=2",
         "data.num_workers=0", "data.pin_memory=false", "debug=limit", "test=false"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, imagenet_root: Path) -> list[Path]:
    """Two tiny ImageNet runs (different seeds): their last.ckpt files."""
    paths = []
    for seed in (1, 2):
        tmp = tmp_path_factory.mktemp(f"run{seed}")
        train(train_config(tmp, imagenet_root, ["data=imagenet", *SMALL, f"seed={seed}"], fashion=False))
        paths.append(tmp / "run" / "checkpoints" / "last.ckpt")
    return paths


def run_eval(tmp_path: Path, imagenet_root: Path, *overrides: str) -> dict:
    typed = [f"data.root={imagenet_root}", "trainer.accelerator=cpu", *overrides]
    cfg = compose_config("eval", [f"paths.root_dir={tmp_path}", f"paths.output_dir={tmp_path / 'eval'}", *typed])
    return evaluate(cfg, [o.split("=")[0] for o in typed if o.startswith("data.")])


@pytest.mark.parametrize("crops", [1, 10])
def test_eval_is_repeatable_and_uses_the_checkpoint_config(
    tmp_path: Path, imagenet_root: Path, checkpoints: list[Path], crops: int
) -> None:
    first = run_eval(tmp_path, imagenet_root, f"ckpt_path={checkpoints[0]}", f"data.test_crops={crops}")
    again = run_eval(tmp_path, imagenet_root, f"ckpt_path={checkpoints[0]}", f"data.test_crops={crops}")
    assert first == again
    assert first["crops"] == crops and first["networks"] == 1
    assert 0.0 <= first["top1_error"] <= 1.0 and first["top5_error"] == 0.0  # 3 classes: top-5 always right
    assert json.loads((tmp_path / "eval" / "eval.json").read_text()) == again


def test_ensemble_of_one_equals_the_checkpoint_and_two_average(
    tmp_path: Path, imagenet_root: Path, checkpoints: list[Path]
) -> None:
    single = run_eval(tmp_path, imagenet_root, f"ckpt_path={checkpoints[0]}")
    one = run_eval(tmp_path, imagenet_root, f"ckpt_path=[{checkpoints[0]}]")
    assert {k: v for k, v in one.items() if k != "checkpoints"} == {
        k: v for k, v in single.items() if k != "checkpoints"
    }
    two = run_eval(tmp_path, imagenet_root, f"ckpt_path=[{checkpoints[0]},{checkpoints[1]}]")
    assert two["networks"] == 2 and two["crops"] == 10


def test_eval_and_predict_commands(tmp_path: Path, imagenet_root: Path, checkpoints: list[Path]) -> None:
    result = run_cli("alexnet-eval", f"ckpt_path={checkpoints[0]}", f"data.root={imagenet_root}",
                     "data.test_crops=10", "trainer.accelerator=cpu", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top-1 error:" in result.stdout and "(10 crops, 1 network;" in result.stdout
    image = imagenet_root / "val" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG"
    folder = imagenet_root / "val" / WNIDS[1]
    result = run_cli("alexnet-predict", f"ckpt_path={checkpoints[0]}", f"data.root={imagenet_root}",
                     f"images=[{image},{folder}]", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("%  n0") == 3 * 3  # three images, three classes each (top-5 of 3 classes)
    assert str(image) in result.stdout and "goldfish" in result.stdout


def test_case_7_predict_leaves_no_file_in_the_working_folder(
    tmp_path: Path, imagenet_root: Path, checkpoints: list[Path]
) -> None:
    image = imagenet_root / "val" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG"
    result = run_main("alexnet-predict", f"ckpt_path={checkpoints[0]}", f"images=[{image}]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(image) in result.stdout and list(tmp_path.iterdir()) == [], "no predict.log, no outputs/"


def test_predict_returns_probabilities(tmp_path: Path, imagenet_root: Path, checkpoints: list[Path]) -> None:
    cfg = compose_config("predict", [f"ckpt_path={checkpoints[1]}", f"data.root={imagenet_root}",
                                     f"images=[{imagenet_root / 'val'}]"])  # fmt: skip
    results = predict(cfg)
    assert len(results) == 6
    for _, top in results:
        assert [name for name, _ in top] != [] and sum(p for _, p in top) == pytest.approx(1.0, abs=1e-5)


def test_checkpoints_record_their_classes_and_other_classes_are_refused(
    tmp_path: Path, imagenet_root: Path, checkpoints: list[Path]
) -> None:
    names = ["n01440764 tench", "n01443537 goldfish", "n01484850 great white shark"]
    assert torch.load(checkpoints[0], weights_only=True)["class_names"] == names
    other = tmp_path / "other"  # the same number of classes, one of them another wnid
    shutil.copytree(imagenet_root / "val", other / "val")
    (other / "val" / WNIDS[2]).rename(other / "val" / "n01491361")
    refused = "The checkpoint was trained on other classes than data.root=.* holds .*not in the data: n01484850"
    with pytest.raises(UserError, match=refused):
        run_eval(tmp_path, other, f"ckpt_path={checkpoints[0]}")
    image = str(imagenet_root / "val" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG")
    with pytest.raises(UserError, match=refused):
        predict(compose_config("predict", [f"ckpt_path={checkpoints[0]}", f"data.root={other}", f"images=[{image}]"]),
                ["data.root"])  # fmt: skip
    (path, top), *_ = predict(compose_config("predict", [f"ckpt_path={checkpoints[0]}", f"images=[{image}]"]))
    assert sorted(name for name, _ in top) == names, "names from the checkpoint"


def test_torchvision_weights_file_gives_torchvision_logits(tmp_path: Path) -> None:
    reference = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path / "alexnet-owt.pth"
    torch.save(reference.state_dict(), path)
    cfg = compose_config("eval", ["model=torchvision", f"model.weights={path}"])
    net = instantiate(cfg.model).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))
    with pytest.raises(InstantiationException) as error:
        instantiate(compose_config("eval", ["model=paper", f"model.weights={path}"]).model)
    assert isinstance(find_user_error(error.value), ArchitectureError)
    assert "does not fit this net (use the model variant it was saved from" in str(find_user_error(error.value))


def test_bad_checkpoints_and_images(tmp_path: Path, imagenet_root: Path, checkpoints: list[Path]) -> None:
    with pytest.raises(UserError, match="no such file"):
        run_eval(tmp_path, imagenet_root, f"ckpt_path={tmp_path / 'missing.ckpt'}")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(UserError, match="was not written by alexnet-train"):
        run_eval(tmp_path, imagenet_root, f"ckpt_path={foreign}")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoints[0].read_bytes()[:5000])
    with pytest.raises(UserError, match="is not a readable checkpoint"):
        run_eval(tmp_path, imagenet_root, f"ckpt_path={truncated}")
    with pytest.raises(UserError, match="is neither a file nor a folder"):
        predict(compose_config("predict", [f"ckpt_path={checkpoints[0]}", "images=[/no/such.jpg]"]))
    with pytest.raises(InstantiationException) as error:
        instantiate(compose_config("eval", ["model.weights=/no/such.pth"]).model)
    assert str(find_user_error(error.value)) == "model.weights=/no/such.pth: no such file."


def test_a_checkpoint_from_before_per_tower_lrn_keeps_its_cross_tower_window() -> None:
    """Runs saved before model.lrn_across_towers existed normalised across the towers; they are rebuilt so."""
    model = {"_target_": "alexnet.models.alexnet.AlexNet", "channels": [8, 16, 16, 16, 16], "input_size": 67,
             "hidden_size": 32, "num_classes": 10, "groups": 2, "lrn": True}  # fmt: skip
    weights = {
        f"net.{k}": v for k, v in AlexNet(**{k: v for k, v in model.items() if k != "_target_"}).state_dict().items()
    }
    old = {"hyper_parameters": {"run_config": {"model": model}}, "state_dict": weights}
    assert type(net_from_checkpoint(old, "old.ckpt").features[2]) is nn.LocalResponseNorm
    new = {"hyper_parameters": {"run_config": {"model": {**model, "lrn_across_towers": False}}}, "state_dict": weights}
    assert net_from_checkpoint(new, "new.ckpt").features[2].towers == 2
