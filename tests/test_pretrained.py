"""model.weights: torchvision's ImageNet weights by name (offline: one line naming the file and its folder), or a
file; into a net with another number of classes every layer but the last loads; a file that fits no layer is
refused; the data's preprocessing follows torchvision's weights unless overridden."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torchvision

from alexnet.errors import find_user_error
from alexnet.models.alexnet import AlexNet
from alexnet.models.pretrained import alexnet
from conftest import compose_config, run_main

TORCHVISION = {"channels": [64, 192, 384, 256, 256], "input_size": 224, "groups": 1, "lrn": False,
               "dropout_position": "before", "adaptive_pool": 6, "init": "default"}  # fmt: skip
TINY = {**TORCHVISION, "channels": [8, 16, 16, 16, 16], "input_size": 67, "hidden_size": 32}
FILE = "alexnet-owt-7be5be79.pth"  # the file name in torchvision's AlexNet_Weights.IMAGENET1K_V1.url


def test_imagenet_weights_offline_name_the_file_and_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ran = run_main("alexnet-train", f"paths.log_dir={tmp_path}", "model=torchvision", "model.weights=IMAGENET1K_V1",
                   cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 2, ran.stderr[-2000:]
    (line,) = [line for line in ran.stderr.splitlines() if line.startswith("error:")]
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert f"put {FILE} into {folder} (torch's hub cache, TORCH_HOME)" in line, line
    assert line.startswith("error: model.weights=IMAGENET1K_V1: cannot download https://download.pytorch.org/models/")
    assert "Traceback" not in ran.stderr + ran.stdout and not list((tmp_path / "runs").glob("*"))  # no run started


def test_imagenet_weights_from_torchs_cache_load_into_a_three_class_net(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A real torchvision alexnet() state_dict (1000 classes) where torch's hub cache keeps IMAGENET1K_V1."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    state = torchvision.models.alexnet().state_dict()
    torch.save(state, folder / FILE)
    with caplog.at_level(logging.INFO, logger="alexnet.models.pretrained"):
        net = alexnet(weights="IMAGENET1K_V1", num_classes=3, **TORCHVISION)
    ours = net.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in state.items() if not k.startswith("classifier.6."))
    assert ours["classifier.6.weight"].shape == (3, 4096) and ours["classifier.6.bias"].shape == (3,)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == (
        "model.weights=IMAGENET1K_V1: loaded features.0, features.3, features.6, features.8, features.10, "
        "classifier.1, classifier.4; initialised classifier.6 anew (3 classes here, 1000 in the weights)."
    )
    same = alexnet(weights="IMAGENET1K_V1", num_classes=1000, **TORCHVISION).eval()  # all of it, strictly
    reference = torchvision.models.alexnet().eval()
    reference.load_state_dict(state)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(same(x), reference(x), rtol=0, atol=0)


def test_a_file_loads_whole_or_all_but_its_last_layer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = AlexNet(num_classes=1000, **TINY)
    path = tmp_path / "tiny_1000.pth"
    torch.save(source.state_dict(), path)
    five = alexnet(weights=str(path), num_classes=5, **TINY).state_dict()
    assert all(torch.equal(five[k], v) for k, v in source.state_dict().items() if not k.startswith("classifier.6."))
    assert five["classifier.6.weight"].shape == (5, 32)
    whole = alexnet(weights=str(path), num_classes=1000, **TINY).state_dict()
    assert all(torch.equal(whole[k], v) for k, v in source.state_dict().items())


def test_files_that_fit_no_layer_or_differ_before_the_last_are_refused(tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, stranger)
    with pytest.raises(ValueError, match=r"stranger.pth fits no layer of this net") as refused:
        alexnet(weights=str(stranger), num_classes=3, **TINY)
    assert find_user_error(refused.value) is refused.value and "\n" not in str(refused.value)
    wider = tmp_path / "wider.pth"
    torch.save(AlexNet(num_classes=3, **{**TINY, "hidden_size": 64}).state_dict(), wider)
    differ = (
        r"classifier.1.weight is \(64, 576\) there and \(32, 576\) here; layers that differ: classifier.1, classifier.4"
    )
    with pytest.raises(ValueError, match=rf"does not fit this net .*{differ}"):
        alexnet(weights=str(wider), num_classes=3, **TINY)


def test_the_data_follows_torchvisions_preprocessing_unless_overridden(tmp_path: Path) -> None:
    base = ["data=image_folder", f"data.root={tmp_path}", "paths.root_dir=/tmp", "paths.output_dir=/tmp/run"]
    preset = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
    cfg = compose_config("train", [*base, "experiment=finetune"])
    assert cfg.model.weights == "IMAGENET1K_V1" and cfg.model.input_size == preset.crop_size[0] == 224
    assert (cfg.data.resize_size, list(cfg.data.mean), list(cfg.data.std)) == (
        preset.resize_size[0], preset.mean, preset.std
    )  # fmt: skip
    assert cfg.data.normalization == "per_channel" and cfg.model._target_ == "alexnet.models.pretrained.alexnet"
    overridden = compose_config("train", [*base, "experiment=finetune", "data.mean=[0.5,0.5,0.5]",
                                          "data.resize_size=240"])  # fmt: skip
    assert (overridden.data.resize_size, list(overridden.data.mean)) == (240, [0.5, 0.5, 0.5])
    own = compose_config("train", [*base, "model=torchvision", "model.weights=/some/file.pth"])
    assert own.data.resize_size == 256  # a file: the data's own defaults
