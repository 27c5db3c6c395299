"""Every picture the project logs to W&B is a uint8 image of what it shows: read back from the PNG W&B writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import wandb
from torchvision.transforms import v2

from alexnet.analysis.paper_figures import conv1_towers, filter_grid
from alexnet.data.fashion_mnist import FashionMNISTDataModule
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.models.alexnet import AlexNet
from alexnet.tracking.wandb_media import confusion_figure
from conftest import assert_visible, make_fashion_mnist, make_imagenet

TINY = {"channels": [8, 16, 16, 16, 16], "hidden_size": 32, "input_size": 67}


def png_of(picture: object) -> Path:
    """The PNG file W&B writes for a logged picture (``WandbLogger.log_image`` wraps each in ``wandb.Image``)."""
    return Path(wandb.Image(picture)._path)


def imagenet(root: Path, input_size: int, normalization: str = "per_channel") -> ImageNetDataModule:
    data = ImageNetDataModule(str(root), num_classes=3, input_size=input_size, resize_size=input_size + 13,
                              num_workers=0, pin_memory=False, normalization=normalization)  # fmt: skip
    data.prepare_data()
    data.setup("fit")
    return data


def fashion(root: Path, input_size: int, channels: int, normalization: str = "per_channel") -> FashionMNISTDataModule:
    data = FashionMNISTDataModule(str(root), input_size=input_size, channels=channels, val_size=40, download=False,
                                  normalization=normalization)  # fmt: skip
    data.setup("fit")
    return data


@pytest.mark.parametrize("source", ["imagenet", "fashion"])
def test_pictures_for_wandb_are_visible_with_random_weights_and_real_images(
    source: str, imagenet_root: Path, fashion_root: Path
) -> None:
    torch.manual_seed(0)
    if source == "imagenet":  # the paper's net, two towers, paper init: N(0, 0.01) weights
        net, data = AlexNet(num_classes=3), imagenet(imagenet_root, 227)
    else:  # a grey one-tower net on Fashion-MNIST
        net, data = AlexNet(num_classes=10, in_channels=1, groups=1, **TINY), fashion(fashion_root, 67, 1)
    images = torch.stack([data.dataset("val")[i][0] for i in range(4)])
    pictures = data.picture(data.model_input(images, "val"))
    assert pictures.dtype == torch.uint8 and pictures.shape == (4, 3, net.input_size, net.input_size)
    for picture in pictures:
        assert_visible(png_of(picture))
    assert_visible(png_of(filter_grid(net)))
    assert_visible(png_of(confusion_figure(torch.randint(0, 5, (net.num_classes,) * 2), data.class_names())))


@pytest.mark.parametrize("normalization", ["per_channel", "paper"])
def test_a_picture_is_the_image_the_net_saw(normalization: str, tmp_path: Path) -> None:
    # Fresh data folders: the paper normalisation caches its mean image next to the data.
    data = imagenet(make_imagenet(tmp_path / "imagenet"), 96, normalization)
    images = torch.stack([data.dataset("val")[i][0] for i in range(4)])
    crops = v2.functional.center_crop(images, [96, 96])
    difference = data.picture(data.model_input(images, "val")).int() - crops.int()
    assert difference.abs().max() <= 1  # un-normalised back to the crop's pixels, up to rounding

    # 28 px: no resize, so the original pixels come back
    grey = fashion(make_fashion_mnist(tmp_path / "fashion", 80, 20), 28, 1, normalization)
    images = torch.stack([grey.dataset("val")[i][0] for i in range(4)])
    pictures = grey.picture(grey.model_input(images))
    assert torch.equal(pictures, images.expand(-1, 3, -1, -1))  # exactly, the grey value in R, G and B


def test_the_filter_picture_stretches_each_kernel_and_puts_the_towers_side_by_side() -> None:
    torch.manual_seed(0)
    net = AlexNet(num_classes=10)  # 96 kernels 11x11x3, conv2 in two groups
    conv1 = net.features[0]
    with torch.no_grad():
        conv1.weight[:48] = 0.0  # tower 1 blank
        conv1.weight[48] *= 1000  # one strong kernel: a layer-wide scale would flatten the others
    towers = conv1_towers(net)
    assert [t.shape for t in towers] == [(48, 3, 11, 11), (48, 3, 11, 11)]
    assert (towers[0] == 128).all(), "zero weights are mid-grey"
    for tile in towers[1]:  # each kernel's largest |weight| at full intensity
        assert tile.min() == 0 or tile.max() == 255
    assert torch.equal(towers[1][0], conv1_towers(net)[1][0])
    with torch.no_grad():
        conv1.weight[49] *= 7
    assert torch.equal(towers[1][1], conv1_towers(net)[1][1]), "a kernel's picture does not depend on its norm"

    grid = filter_grid(net, columns=8, zoom=4)
    tower_width = 8 * 12 + 1  # 8 kernels of 11 with 1-pixel borders
    assert grid.dtype == torch.uint8 and grid.shape == (3, 4 * (6 * 12 + 1), 4 * (2 * tower_width + 4))
    left, right = grid[:, :, : 4 * tower_width], grid[:, :, 4 * (tower_width + 4) :]
    assert set(left.unique().tolist()) == {128, 255}, "tower 1 (blank kernels, white borders) on the left"
    assert right.float().std() > 30, "tower 2 on the right"
