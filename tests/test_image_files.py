"""Every image file reaches the model as the picture a person sees, and every image of a class folder counts once,
under its own class (links, loops and all)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.data.fashion_mnist import FashionMNISTDataModule
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.errors import UserError

WHITE = 255


def reference() -> Image.Image:
    """An 8-bit RGB picture, wider than tall: a colour ramp and three coloured blocks."""
    height, width = 30, 40
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[..., 1] = np.linspace(40, 200, height, dtype=np.uint8)[:, None]
    pixels[..., 2] = 90
    pixels[3:12, 4:14] = (250, 20, 20)
    pixels[15:27, 20:34] = (20, 20, 230)
    pixels[2:8, 30:38] = (0, 0, 0)
    return Image.fromarray(pixels, "RGB")


def alpha_mask() -> np.ndarray:
    """Opaque, with a transparent and a half-transparent block."""
    alpha = np.full((30, 40), 255, np.uint8)
    alpha[15:27, 20:34] = 0
    alpha[3:12, 4:14] = 128
    return alpha


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """What a viewer shows: the pixels blended over a white background by their opacity."""
    a = alpha[..., None].astype(np.float32) / 255
    return Image.fromarray(np.rint(rgb * a + WHITE * (1 - a)).astype(np.uint8), "RGB")


def grey() -> Image.Image:
    return reference().convert("L")


def sixteen_bit(mode: str) -> Image.Image:
    values = np.asarray(grey()).astype(np.uint16) * 257  # 255 -> 65535: the same picture at 16 bits
    image = Image.fromarray(values.astype(">u2" if mode == "I;16B" else "<u2"))
    assert image.mode == mode
    return image


def rgba() -> tuple[Image.Image, Image.Image]:
    rgb = np.asarray(reference()).copy()
    rgb[alpha_mask() == 0] = (0, 0, 0)  # what a transparent pixel hides: black here
    stored = Image.fromarray(np.dstack([rgb, alpha_mask()]), "RGBA")
    return stored, over_white(rgb, alpha_mask())


def grey_alpha() -> tuple[Image.Image, Image.Image]:
    g = np.asarray(grey())
    stored = Image.fromarray(np.dstack([g, alpha_mask()]), "LA")
    return stored, over_white(np.repeat(g[..., None], 3, axis=2), alpha_mask())


def palette_with_transparency() -> tuple[Image.Image, Image.Image]:
    quantized = reference().quantize(32)
    index = np.asarray(quantized).copy()
    index[15:27, 20:34] = 31  # one palette entry marks the transparent pixels
    stored = Image.fromarray(index, "P")
    stored.putpalette(quantized.getpalette())
    stored.info["transparency"] = 31
    shown = np.asarray(stored.convert("RGB")).copy()
    shown[index == 31] = WHITE
    return stored, Image.fromarray(shown, "RGB")


def exif_rotated() -> tuple[Image.Image, Image.Image, dict]:
    """The picture stored sideways, with the EXIF tag that tells viewers to turn it upright."""
    stored = reference().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return stored, reference(), {"exif": exif.tobytes()}


JPEG = {"quality": 95, "subsampling": 0}  # lossy: compared within 3 of 255 on average
# name -> (what is written, what a person sees, file format, save options, largest mean error in 0-255 steps)
Case = tuple[Image.Image, Image.Image, str, dict, float]
MODES: dict[str, Callable[[], Case]] = {
    "RGB PNG": lambda: (reference(), reference(), "PNG", {}, 0),
    "RGB JPEG": lambda: (reference(), reference(), "JPEG", JPEG, 3),
    "L (grey) PNG": lambda: (grey(), grey().convert("RGB"), "PNG", {}, 0),
    "1-bit PNG": lambda: (reference().convert("1"), reference().convert("1").convert("RGB"), "PNG", {}, 0),
    "P (palette) PNG": lambda: (reference().quantize(64), reference().quantize(64).convert("RGB"), "PNG", {}, 0),
    "P with transparency PNG": lambda: (*palette_with_transparency(), "PNG", {}, 0),
    "P with transparency GIF": lambda: (*palette_with_transparency(), "GIF", {}, 0),
    "RGBA PNG": lambda: (*rgba(), "PNG", {}, 0.5),
    "RGBA WEBP lossless": lambda: (*rgba(), "WEBP", {"lossless": True}, 0.5),
    "LA (grey + alpha) PNG": lambda: (*grey_alpha(), "PNG", {}, 0.5),
    "I;16 (16-bit grey) PNG": lambda: (sixteen_bit("I;16"), grey().convert("RGB"), "PNG", {}, 0),
    "I;16 (16-bit grey) TIFF": lambda: (sixteen_bit("I;16"), grey().convert("RGB"), "TIFF", {}, 0),
    "I;16B (16-bit big-endian) TIFF": lambda: (sixteen_bit("I;16B"), grey().convert("RGB"), "TIFF", {}, 0),
    "CMYK TIFF": lambda: (reference().convert("CMYK"), reference(), "TIFF", {}, 0),
    "CMYK JPEG": lambda: (reference().convert("CMYK"), reference(), "JPEG", JPEG, 3),
    "LAB TIFF": lambda: (reference().convert("LAB"), reference(), "TIFF", {}, 2),
    "EXIF-rotated JPEG": lambda: (
        *exif_rotated()[:2],
        "JPEG",
        {"quality": 95, "subsampling": 0, **exif_rotated()[2]},
        3,
    ),
}


def as_loaded(path: Path) -> torch.Tensor:
    """The uint8 sample the ImageNet loader (and alexnet-predict) makes of a file: shorter side resized to 64 (no
    reduced-scale JPEG decoding at this size), centre-cropped."""
    dm = ImageNetDataModule(root="/nonexistent", num_classes=3, resize_size=64, input_size=64)
    return dm.read_image(str(path))


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_reaches_the_model_as_the_picture_a_person_sees(tmp_path: Path, mode: str) -> None:
    stored, seen, fmt, options, tolerance = MODES[mode]()
    path, expected = tmp_path / f"image.{fmt.lower()}", tmp_path / "seen.png"
    stored.save(path, format=fmt, **options)
    seen.save(expected)
    got, want = as_loaded(path).float(), as_loaded(expected).float()
    assert got.shape == want.shape == (3, 64, 64)
    error = (got - want).abs().mean().item()
    assert error <= tolerance, f"{mode}: mean error {error:.2f} of 255 against the 8-bit RGB picture"
    assert want.std() > 20, "the reference is a picture, not a flat field"


@pytest.mark.parametrize("mode", ["I", "F"])
def test_pixels_without_a_brightness_scale_are_refused_not_guessed(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "scientific.tiff"
    Image.fromarray(np.asarray(grey()).astype(np.int32 if mode == "I" else np.float32) * 1000, mode).save(path)
    with pytest.raises(UserError, match=f"Unreadable image {path} .*mode {mode} .*has no standard brightness range"):
        as_loaded(path)


def test_fashion_mnist_reads_any_mode_as_the_grey_picture(tmp_path: Path) -> None:
    dm = FashionMNISTDataModule(root=str(tmp_path))
    sixteen, transparent, plain = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    sixteen_bit("I;16").save(sixteen)
    stored, seen = grey_alpha()
    stored.save(transparent)
    grey().save(plain)
    assert torch.equal(dm.read_image(str(sixteen)), dm.read_image(str(plain)))
    seen.save(plain)
    assert (dm.read_image(str(transparent)).float() - dm.read_image(str(plain)).float()).abs().max() <= 1


def write_class(folder: Path, colour: tuple[int, int, int], n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (8, 8), colour).save(folder / f"{i}.png")


def test_links_and_loops_in_class_folders_count_each_image_once_under_its_own_class(tmp_path: Path) -> None:
    train = tmp_path / "train"
    write_class(train / "n01", (250, 0, 0), 4)
    write_class(train / "n02", (0, 250, 0), 4)
    write_class(train / "n03", (0, 0, 250), 3)
    os.symlink("..", train / "n01" / "loop")  # a link back up the tree
    os.symlink(".", train / "n02" / "self")
    os.symlink("../n03", train / "n01" / "other_class")  # another class's folder
    os.symlink("../n03/0.png", train / "n02" / "borrowed.png")  # another class's image
    os.symlink("0.png", train / "n02" / "again.png")  # this class's image a second time
    store = tmp_path / "store" / "n03_extra"
    write_class(store, (0, 0, 250), 2)
    os.symlink(store, train / "n03" / "extra")  # a folder elsewhere: its images belong here
    for wnid in ("n01", "n02", "n03"):
        write_class(tmp_path / "val" / wnid, (0, 0, 0), 1)
    dm = ImageNetDataModule(root=str(tmp_path), num_classes=3, num_workers=0)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    counts = torch.bincount(torch.tensor(dataset.targets), minlength=3).tolist()
    assert counts == [4, 4, 5], counts
    for path, label in dataset.samples:
        colour = np.asarray(Image.open(path))[0, 0]
        assert int(colour.argmax()) == label, f"{path} is labelled {label}"
