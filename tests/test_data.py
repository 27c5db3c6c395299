"""The Fashion-MNIST data module: files on disk -> uint8 batches -> model input on the device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet.data import fashion_mnist
from alexnet.data.fashion_mnist import FashionMNISTDataModule
from alexnet.errors import UserError
from conftest import make_fashion_mnist


def datamodule(root: Path, **kwargs: object) -> FashionMNISTDataModule:
    return FashionMNISTDataModule(root=str(root), download=False, **{"batch_size": 8, "val_size": 40, **kwargs})


def test_split_is_fixed_and_batches_stay_uint8(fashion_root: Path) -> None:
    dm = datamodule(fashion_root)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (360, 40)
    again = datamodule(fashion_root)
    again.setup("fit")
    assert dm.val_set.indices == again.val_set.indices
    other = datamodule(fashion_root, split_seed=7)
    other.setup("fit")
    assert dm.val_set.indices != other.val_set.indices
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (8,)
    dm.setup("test")
    assert len(dm.test_set) == 100
    fraction = datamodule(fashion_root, val_size=0.25)
    fraction.setup("fit")
    assert len(fraction.val_set) == 100


@pytest.mark.parametrize(("size", "channels"), [(224, 1), (227, 3)])
def test_batch_becomes_normalised_model_input(fashion_root: Path, size: int, channels: int) -> None:
    dm = datamodule(fashion_root, input_size=size, channels=channels, mean=[0.5], std=[0.25])
    images = torch.full((2, 1, 28, 28), 204, dtype=torch.uint8)  # 204/255 = 0.8
    x, y = dm.on_after_batch_transfer((images, torch.tensor([1, 2])), 0)
    assert x.dtype == torch.float32 and x.shape == (2, channels, size, size)
    torch.testing.assert_close(x, torch.full_like(x, (0.8 - 0.5) / 0.25))
    assert y.tolist() == [1, 2]


def test_three_channels_replicate_the_grey_image(fashion_root: Path) -> None:
    dm = datamodule(fashion_root, channels=3)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    x, _ = dm.on_after_batch_transfer((images, torch.zeros(2, dtype=torch.long)), 0)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    grey, _ = datamodule(fashion_root).on_after_batch_transfer((images, torch.zeros(2, dtype=torch.long)), 0)
    torch.testing.assert_close(x[:, :1], grey)  # same statistics on every channel


def test_missing_files_name_the_layout_and_the_override(tmp_path: Path) -> None:
    dm = datamodule(tmp_path / "nowhere")
    with pytest.raises(UserError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert f"data.root={tmp_path / 'nowhere'}" in message
    assert str(tmp_path / "nowhere" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte") in message
    assert "alexnet-train data.root=" in message


def test_failed_download_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://example, got: no network")

    monkeypatch.setattr(fashion_mnist, "FashionMNIST", offline)
    dm = FashionMNISTDataModule(root=str(tmp_path), download=True)
    with pytest.raises(UserError, match="download failed: Error downloading .* no network"):
        dm.prepare_data()


def test_corrupt_files_are_reported(tmp_path: Path) -> None:
    root = make_fashion_mnist(tmp_path, n_train=50, n_test=10)
    path = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match="Could not read the Fashion-MNIST IDX files"):
        datamodule(root, val_size=5).setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": 400}, "data.val_size=400 leaves no training images out of 400"),
        (
            {"val_size": 1.0},
            r"data.val_size=1.0: must be a count \(a non-negative integer\) or a fraction between 0 and 1",
        ),
        ({"normalization": "foo"}, "data.normalization='foo': must be one of per_channel, paper"),
        ({"num_classes": 1000}, "data.num_classes=1000: Fashion-MNIST has 10 classes"),
        ({"channels": 2}, r"data.channels=2: must be 1 \(grey\) or 3 \(RGB\); it follows model.in_channels"),
    ],
)
def test_bad_settings(fashion_root: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        datamodule(fashion_root, **kwargs).setup("fit")


def test_every_data_module_provides_the_shared_interface(fashion_root: Path, imagenet_root: Path) -> None:
    from alexnet.data import ImageClassificationData
    from alexnet.data.imagenet.image_folder import ImageNetDataModule

    modules = [
        FashionMNISTDataModule(root=str(fashion_root), download=False),
        ImageNetDataModule(root=str(imagenet_root), num_classes=3, num_workers=0),
    ]
    for module in modules:
        assert isinstance(module, ImageClassificationData), type(module).__name__
        assert module.test_crops in (1, 10) and len(module.class_names()) == module.num_classes
