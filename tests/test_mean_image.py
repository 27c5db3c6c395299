"""data.normalization=paper: the training set's mean image, computed once, cached, checked against the data, and
the model input at the paper's raw pixel scale."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from alexnet.analysis.scored_net import build_net_and_data
from alexnet.data import mean_image
from alexnet.data.batch_transforms import pca_lighting
from alexnet.data.fashion_mnist import FashionMNISTDataModule
from alexnet.data.image_files import load_image
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.run import build
from conftest import WNIDS, compose_config, make_fashion_mnist, make_imagenet, train_config, write_jpeg

TINY_NET = ["model.input_size=67", "model.channels=[8,16,16,16,16]", "model.hidden_size=32"]


def paper_imagenet(root: Path, **kwargs: object) -> ImageNetDataModule:
    settings = {"num_classes": 3, "batch_size": 4, "num_workers": 0, "pin_memory": False, **kwargs}
    return ImageNetDataModule(root=str(root), normalization="paper", **settings)


def served_training_images(root: Path) -> torch.Tensor:
    """Every training image as the loader serves it: shorter side 256, central 256x256, uint8."""
    files = sorted(p for p in (root / "train").rglob("*") if p.is_file())
    return torch.stack([load_image(str(p), 256, skip_unreadable=False) for p in files])


def test_mean_image_is_computed_cached_reused_and_refreshed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_imagenet(tmp_path / "imagenet", {"train": 2, "val": 1})
    cache = root / "mean_image_train_256px.pt"
    caplog.set_level(logging.INFO)

    first = paper_imagenet(root)
    first.prepare_data()
    expected = served_training_images(root).double().mean(0).float()
    assert first.normalization.mean_image.shape == (3, 256, 256) and cache.is_file()
    torch.testing.assert_close(first.normalization.mean_image, expected, rtol=0, atol=1e-4)
    assert "computing the training set's mean image once" in caplog.text

    written = cache.stat().st_mtime_ns
    caplog.clear()
    reused = paper_imagenet(root)
    reused.prepare_data()
    assert "using the cached mean image" in caplog.text and "computing" not in caplog.text
    assert cache.stat().st_mtime_ns == written
    assert torch.equal(reused.normalization.mean_image, first.normalization.mean_image)

    caplog.clear()  # a new image: the cache is stale, says so, and is replaced
    write_jpeg(root / "train" / WNIDS[0] / "added.JPEG", (300, 280), (250, 250, 250))
    refreshed = paper_imagenet(root)
    refreshed.prepare_data()
    assert "was computed from different data" in caplog.text
    new_expected = served_training_images(root).double().mean(0).float()
    torch.testing.assert_close(refreshed.normalization.mean_image, new_expected, rtol=0, atol=1e-4)
    assert (new_expected - expected).abs().max() > 10

    caplog.clear()  # a file rewritten in place is a change too
    write_jpeg(root / "train" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG", (300, 260), (0, 0, 0))
    rewritten = paper_imagenet(root)
    rewritten.prepare_data()
    assert "was computed from different data" in caplog.text
    torch.testing.assert_close(
        rewritten.normalization.mean_image, served_training_images(root).double().mean(0).float(), rtol=0, atol=1e-4
    )

    other_ranks = paper_imagenet(root)  # after prepare_data in the first process, setup() reads the file as is
    other_ranks.setup("fit")
    assert torch.equal(other_ranks.normalization.mean_image, rewritten.normalization.mean_image)


def test_read_only_data_folder_caches_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_imagenet(tmp_path / "imagenet", {"train": 1, "val": 1})
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    write = mean_image._write_atomically

    def read_only_data(path: Path, content: dict) -> Path:
        if path.parent == root:  # tests run as root, so chmod cannot make the folder read-only
            raise PermissionError(13, "Permission denied", str(path))
        return write(path, content)

    monkeypatch.setattr(mean_image, "_write_atomically", read_only_data)
    caplog.set_level(logging.INFO)
    paper_imagenet(root).prepare_data()
    (cached,) = (tmp_path / "cache" / "mean_images").glob("*-mean_image_train_256px.pt")
    assert "cannot write next to the data" in caplog.text and str(cached.parent) in caplog.text
    assert not (root / "mean_image_train_256px.pt").exists()
    caplog.clear()
    again = paper_imagenet(root)
    again.prepare_data()
    assert "using the cached mean image" in caplog.text and str(cached) in caplog.text


def test_model_input_has_the_papers_pixel_scale(tmp_path: Path) -> None:
    root = make_imagenet(tmp_path / "imagenet", {"train": 2, "val": 1})
    recipe = ["experiment=paper_imagenet", "data.num_classes=3", "data.batch_size=6", "data.num_workers=0",
              "data.pin_memory=false", *TINY_NET]  # fmt: skip
    run = build(train_config(tmp_path, root, recipe, fashion=False))
    dm = run.datamodule
    dm.prepare_data()
    dm.setup("fit")
    images, _ = next(iter(dm.train_dataloader()))  # all six training images
    torch.manual_seed(0)
    x = dm.model_input(images, "train")
    assert x.shape == (6, 3, 67, 67)
    assert x.abs().max() <= 255 + 20, "raw 0-255 pixels minus the mean, plus a lighting shift of a few units"
    assert x.std() > 20 and x.mean().abs() < 10, (float(x.std()), float(x.mean()))
    centre = dm.model_input(images, "val")  # the same window of every image and of the mean: averages to zero
    assert centre.mean(0).abs().max() < 1e-3
    with torch.no_grad():  # FC8 at initialisation sees the input, not just the bias-1 hidden units
        assert run.module.net(centre).std(0).mean() > 1e-3

    modern = build(train_config(tmp_path, root, [*recipe, "data.normalization=per_channel"], fashion=False))
    assert modern.datamodule.model_input(images, "val").abs().max() < 3  # the modern scale, for contrast


def test_the_mean_is_cropped_and_mirrored_with_the_image(tmp_path: Path) -> None:
    """Images equal to the (rounded) mean image give ~0 for every random crop and flip: the same window of the
    mean is subtracted, mirrored when the image is."""
    root = make_imagenet(tmp_path / "imagenet", {"train": 2, "val": 1})
    dm = paper_imagenet(root, input_size=200, lighting_std=0.0)
    dm.prepare_data()
    mean = dm.normalization.mean_image
    assert (mean[:, :, 1:] - mean[:, :, :-1]).abs().mean() > 0.05, "the mean has a left-right gradient to mirror"
    images = mean.round().to(torch.uint8)[None].repeat(32, 1, 1, 1)
    torch.manual_seed(0)
    x = dm.model_input(images, "train")
    assert x.abs().max() <= 0.5 + 1e-4
    tens = dm.model_input(images, "test")
    assert tens.shape == (32, 10, 3, 200, 200) and tens.abs().max() <= 0.5 + 1e-4


def test_lighting_shift_is_scaled_to_raw_pixels() -> None:
    zeros = torch.zeros(64, 3, 2, 2)
    torch.manual_seed(0)
    unit = pca_lighting(zeros, std=0.1)
    torch.manual_seed(0)
    torch.testing.assert_close(pca_lighting(zeros, std=0.1, scale=255.0), 255 * unit)


def test_fashion_mnist_paper_normalisation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_fashion_mnist(tmp_path, n_train=60, n_test=10)
    dm = FashionMNISTDataModule(root=str(root), download=False, val_size=10, normalization="paper", input_size=67)
    dm.setup("fit")
    training = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])  # the 50 not held out
    torch.testing.assert_close(dm.normalization.mean_image, training.double().mean(0).float())
    assert (root / "FashionMNIST" / "mean_image_train_holdout10_seed42.pt").is_file()
    x = dm.model_input(training[:4])
    assert x.shape == (4, 1, 67, 67) and -255 <= x.min() < -20 and 20 < x.max() <= 255

    caplog.set_level(logging.INFO)
    make_fashion_mnist(root, n_train=60, n_test=10, seed=5)  # other images in the same files
    again = FashionMNISTDataModule(root=str(root), download=False, val_size=10, normalization="paper")
    again.setup("fit")
    assert "was computed from different data" in caplog.text
    assert not torch.equal(again.normalization.mean_image, dm.normalization.mean_image)


def test_checkpoint_carries_the_mean_image_to_evaluation(tmp_path: Path) -> None:
    """alexnet-eval uses the mean image the net was trained with, even where the training images are gone."""
    root = make_fashion_mnist(tmp_path / "data", n_train=60, n_test=10)
    cfg = train_config(tmp_path, root, ["data.normalization=paper", "data.val_size=10", "debug=fdr", "logger=none",
                                        "model=paper", *TINY_NET])  # fmt: skip
    run = build(cfg)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    checkpoint = tmp_path / "paper.ckpt"
    run.trainer.save_checkpoint(checkpoint)
    trained_with = run.datamodule.normalization.mean_image
    assert torch.equal(torch.load(checkpoint, weights_only=True)["FashionMNISTDataModule"]["mean_image"], trained_with)

    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    (moved / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"")  # the training images are gone
    for cached in (moved / "FashionMNIST").glob("mean_image_*"):
        cached.unlink()
    eval_cfg = compose_config("eval", [f"ckpt_path={checkpoint}", f"data.root={moved}", "trainer.accelerator=cpu"])
    scored = build_net_and_data(eval_cfg, ["data.root"])
    net, datamodule = scored.net, scored.datamodule
    assert torch.equal(datamodule.normalization.mean_image, trained_with)
    datamodule.setup("test")
    images, _ = next(iter(datamodule.test_dataloader()))
    assert torch.isfinite(net(datamodule.model_input(images))).all()


def test_a_cache_whose_values_were_changed_is_recomputed_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The right fingerprint but other values (a damaged file): the checksum of the values tells, and it is redone."""
    root = make_imagenet(tmp_path / "imagenet", {"train": 2, "val": 1})
    cache = root / "mean_image_train_256px.pt"
    paper_imagenet(root).prepare_data()
    saved = torch.load(cache, weights_only=True)
    saved["mean_image"][0, 100:110, 100:110] += 50  # fingerprint and checksum kept: only the values changed
    torch.save(saved, cache)
    caplog.set_level(logging.INFO)
    recomputed = paper_imagenet(root)
    recomputed.prepare_data()
    assert "its values do not match its checksum (damaged)" in caplog.text
    expected = served_training_images(root).double().mean(0).float()
    torch.testing.assert_close(recomputed.normalization.mean_image, expected, rtol=0, atol=1e-4)
    rewritten = torch.load(cache, weights_only=True)
    torch.testing.assert_close(rewritten["mean_image"], expected, rtol=0, atol=1e-4)  # the cache is whole again
