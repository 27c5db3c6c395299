"""ImageNet: layout checks, decoding, the paper's augmentation, 10-crop testing, training on real JPEG files."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from alexnet.data.batch_transforms import IMAGENET_EIGVAL, IMAGENET_EIGVEC, pca_lighting, random_crop_flip, ten_crop
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.data.imagenet.pipeline import imagenet_class_names
from alexnet.errors import UserError
from alexnet.models.alexnet import AlexNet
from alexnet.models.lit_alexnet import crop_averaged_log_probs
from alexnet.run import build
from conftest import WNIDS, make_imagenet, train_config


def datamodule(root: Path, **kwargs: object) -> ImageNetDataModule:
    settings = {"num_classes": 3, "batch_size": 4, "num_workers": 0, "pin_memory": False, **kwargs}
    return ImageNetDataModule(root=str(root), **settings)


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """A 3-channel uint8 image whose channels 0/1 hold the row/column, so any crop reveals where it came from."""
    rows = torch.arange(height)[:, None].expand(height, width)
    cols = torch.arange(width)[None, :].expand(height, width)
    return torch.stack([rows, cols, torch.zeros_like(rows)]).to(torch.uint8)


def test_random_crops_lie_inside_the_image_and_flips_mirror() -> None:
    torch.manual_seed(0)
    images = coordinate_image(40, 50)[None].repeat(64, 1, 1, 1)
    crops = random_crop_flip(images, 24)
    assert crops.shape == (64, 3, 24, 24) and crops.dtype == torch.uint8
    mirrored = 0
    for crop in crops:
        top, left = int(crop[0, 0, 0]), int(crop[1, 0, :].min())
        window = images[0, :, top : top + 24, left : left + 24]
        assert top + 24 <= 40 and left + 24 <= 50
        if torch.equal(crop, window):
            continue
        assert torch.equal(crop, window.flip(-1)), "a crop is the window or its mirror image"
        mirrored += 1
    assert 16 < mirrored < 48  # about half
    assert len({(int(c[0, 0, 0]), int(c[1, 0, :].min())) for c in crops}) > 20  # a different crop per image
    unflipped = random_crop_flip(images, 24, flip=False)[:, 1, 0]  # column indices along the first row
    assert torch.all(unflipped[:, 1:] > unflipped[:, :-1]), "flip=False never mirrors"


def test_pca_lighting_follows_the_eigen_statistics() -> None:
    torch.manual_seed(0)
    zeros = torch.zeros(20000, 3, 2, 2)
    shifted = pca_lighting(zeros, std=0.1)
    shift = shifted[:, :, 0, 0]
    assert torch.equal(shifted, shift[:, :, None, None].expand_as(shifted)), "one colour shift per image"
    eigvec, eigval = torch.tensor(IMAGENET_EIGVEC), torch.tensor(IMAGENET_EIGVAL)
    expected = eigvec @ torch.diag((0.1 * eigval) ** 2) @ eigvec.T
    torch.testing.assert_close(torch.cov(shift.T), expected, atol=2e-5, rtol=0.05)
    assert torch.equal(pca_lighting(zeros[:4], std=0.0), zeros[:4])


def test_ten_crop_is_the_corners_centre_and_mirrors() -> None:
    images = coordinate_image(30, 30)[None]
    crops = ten_crop(images, 20)
    assert crops.shape == (1, 10, 3, 20, 20)
    assert torch.equal(crops[0, 0], images[0, :, :20, :20])  # top-left
    assert torch.equal(crops[0, 4], images[0, :, 5:25, 5:25])  # centre
    assert torch.equal(crops[0, 5], images[0, :, :20, 10:].flip(-1))  # top-left of the mirrored image
    assert torch.equal(crops[0, 9], images[0, :, 5:25, 5:25].flip(-1))  # centre, mirrored


def test_ten_crop_prediction_is_the_mean_of_ten_softmaxes() -> None:
    torch.manual_seed(0)
    net = AlexNet(input_size=67, num_classes=7, init="default").eval()
    crops = torch.randn(2, 10, 3, 67, 67)
    with torch.no_grad():
        single = torch.stack([net(crops[:, k]).softmax(-1) for k in range(10)], 1).mean(1)
        torch.testing.assert_close(crop_averaged_log_probs(net, crops).exp(), single)


def test_loader_serves_uint8_rgb_of_every_mode(imagenet_root: Path) -> None:
    dm = datamodule(imagenet_root)
    dm.setup("fit")
    images, labels = next(iter(dm.val_dataloader()))
    assert images.shape == (4, 3, 256, 256) and images.dtype == torch.uint8
    grey = dm.read_image(str(imagenet_root / "val" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG"))  # saved as mode L
    assert grey.shape == (3, 256, 256) and torch.equal(grey[0], grey[1])
    cmyk = dm.read_image(str(imagenet_root / "val" / WNIDS[1] / f"{WNIDS[1]}_1.JPEG"))  # saved as CMYK
    assert cmyk.float().mean((1, 2)).argmax() == 1  # still green after conversion
    assert dm.class_names() == ["n01440764 tench", "n01443537 goldfish", "n01484850 great white shark"]
    assert len(imagenet_class_names()) == 1000


@pytest.mark.parametrize(("stage", "shape"), [("train", (4, 3, 227, 227)), ("val", (4, 3, 227, 227)),
                                              ("test", (4, 10, 3, 227, 227))])  # fmt: skip
def test_model_input_per_stage(imagenet_root: Path, stage: str, shape: tuple) -> None:
    dm = datamodule(imagenet_root, input_size=227)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
    x = dm.model_input(images, stage)
    assert x.shape == shape and x.dtype == torch.float32
    if stage != "train":  # no randomness outside training: lighting and random crops are off
        assert torch.equal(x, dm.model_input(images, stage))
    centre = dm.model_input(images, "val")
    expected = (images[:, :, 14:241, 14:241].float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / (
        torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    )
    torch.testing.assert_close(centre, expected)


def test_unreadable_images_are_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_imagenet(tmp_path, {"train": 2, "val": 2})
    broken = root / "val" / WNIDS[2] / "broken.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dm = datamodule(root, batch_size=8)
    dm.setup("validate")
    with caplog.at_level(logging.WARNING):
        images, labels = next(iter(dm.val_dataloader()))
    assert images.shape[0] == 6  # 7 files, one skipped
    assert f"Skipping unreadable image {broken}" in caplog.text
    strict = datamodule(root, batch_size=8, skip_unreadable=False)
    strict.setup("validate")
    with pytest.raises(UserError, match=f"Unreadable image {broken}"):
        next(iter(strict.val_dataloader()))


def test_layout_errors_show_the_expected_layout(tmp_path: Path, imagenet_root: Path) -> None:
    with pytest.raises(UserError, match=r"no train/ folder under data.root=.*\nExpected layout"):
        datamodule(tmp_path).setup("fit")
    with pytest.raises(UserError, match="has 3 class folders but data.num_classes=1000; set data.num_classes=3"):
        datamodule(imagenet_root, num_classes=1000).setup("fit")
    root = make_imagenet(tmp_path / "empty", {"train": 1, "val": 1})
    (root / "train" / "n09999999").mkdir()
    with pytest.raises(UserError, match="has 4 class folders"):
        datamodule(root).setup("fit")
    with pytest.raises(UserError, match="class folders without images in .*: n09999999"):
        datamodule(root, num_classes=4).setup("fit")
    with pytest.raises(UserError, match="data.test_crops=5"):
        datamodule(imagenet_root, test_crops=5)


def test_paper_recipe_trains_on_jpeg_files(tmp_path: Path, imagenet_root: Path) -> None:
    cfg = train_config(
        tmp_path,
        imagenet_root,
        ["experiment=paper_imagenet", "debug=fdr", "data.num_classes=3", "data.batch_size=2",
         "data.num_workers=0", "data.pin_memory=false", "++callbacks.checkpoint=null",
         "++callbacks.best_checkpoint=null"],
        fashion=False,
    )  # fmt: skip
    assert (cfg.model.input_size, cfg.model.groups, cfg.model.lrn, cfg.trainer.max_epochs) == (227, 2, True, 90)
    run = build(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert math.isfinite(float(run.trainer.callback_metrics["val/loss"]))
    assert run.module.net.num_classes == 3
