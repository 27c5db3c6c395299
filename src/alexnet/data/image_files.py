"""Image files as a person sees them, and class folders whose every image counts once, under its own class;
the paper's 256x256 patch of one file (``read_patch``, ``load_image``), for the ImageFolder loader,
``alexnet-prepare`` and ``alexnet-predict`` alike.

PIL opens many modes, and ``Image.convert("RGB")`` alone turns several of them into another picture: 16-bit grey
clips to white, transparent pixels show whatever colour they hide, and a photo stored sideways with an EXIF
orientation tag stays sideways. torchvision's ``ImageFolder`` follows symbolic links without noticing loops, so a
link back up the tree counts the same files again and again, some of them under another class.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from alexnet.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as on a web page or a printed sheet
# What decoding a file can raise: not an image, truncated, corrupt, absurdly large, pixels without a brightness scale.
UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnseeableImage(ValueError):
    """An image whose pixels have no standard brightness scale (32-bit integers, floats)."""


def as_seen(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, the way a viewer shows it: EXIF orientation applied, 16-bit grey scaled (not clipped)
    to 8 bits, transparency composited over white; palette, 1-bit, CMYK, YCbCr and LAB converted by PIL."""
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_MODES:
        grey = np.asarray(image).astype(np.float32) / 257  # 65535 -> 255
        image = Image.fromarray(np.rint(grey).astype(np.uint8), "L")
    elif image.mode in ("I", "F"):
        raise UnseeableImage(
            f"mode {image.mode} ({'32-bit integer' if image.mode == 'I' else 'floating-point'} pixels) has no "
            "standard brightness range; save it as an 8- or 16-bit image"
        )
    if image.mode == "La":  # premultiplied alpha: PIL converts it to RGBA only through LA
        image = image.convert("LA")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def class_folder_samples(
    directory: str | Path, class_to_idx: dict[str, int], is_valid_file: Callable[[str], bool] = is_image_file
) -> tuple[list[tuple[str, int]], int]:
    """(path, label) of every image file under the class folders of ``directory``, each file once, and how many
    links were left out.

    Links are followed (a class folder may link to a store elsewhere), but each real folder is listed once, so a
    link loop ends; each real file counts once; and a file that really lies in another class's folder is left to
    that class (a link to it from here does not relabel it). Only links cost a path resolution: ImageNet's 1.28
    million plain files are listed with one ``scandir`` per folder, as torchvision does.
    """
    directory = Path(directory)
    owners = {os.path.realpath(directory / name): label for name, label in class_to_idx.items()}

    def owner(real: str, default: int) -> int:
        return next((owners[p] for p in (real, *map(str, Path(real).parents)) if p in owners), default)

    seen_files: set[str] = set()
    samples: list[tuple[str, int]] = []
    left_out = 0
    for name, label in sorted(class_to_idx.items(), key=lambda item: item[1]):
        seen_dirs: set[str] = set()
        folders = [str(directory / name)]
        while folders:
            folder = folders.pop()
            real_folder = os.path.realpath(folder)
            if real_folder in seen_dirs or owner(real_folder, label) != label:
                left_out += 1  # a loop, a second link to a folder already listed, or another class's folder
                continue
            seen_dirs.add(real_folder)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
            folders += [e.path for e in reversed(entries) if e.is_dir()]  # depth first, in name order
            for entry in entries:
                if entry.is_dir() or not is_valid_file(entry.path) or not entry.is_file():
                    continue
                link = entry.is_symlink()
                real = os.path.realpath(entry.path) if link else os.path.join(real_folder, entry.name)
                if real in seen_files or (link and owner(real, label) != label):
                    left_out += 1
                    continue
                seen_files.add(real)
                samples.append((entry.path, label))
    return samples, left_out


class ClassFolders(ImageFolder):
    """torchvision's ImageFolder, listing its samples with ``class_folder_samples``."""

    def make_dataset(  # type: ignore[override]
        self,
        directory: str,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        samples, left_out = class_folder_samples(directory, class_to_idx, is_valid_file or is_image_file)
        if left_out:
            log.warning(
                "%s: left out %d links that repeat a folder or file, or point into another class's folder; each "
                "image counts once, under the class folder it is really in.",
                directory,
                left_out,
            )
        return samples


def read_patch(path: str, size: int) -> torch.Tensor:
    """uint8 (3, size, size): the picture ``as_seen``, shorter side rescaled to ``size`` (antialiased), centre crop.

    Raises one of ``UNREADABLE`` when the file cannot be decoded.
    """
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # lets JPEG decode at a reduced scale when the image is large
        rgb = as_seen(image)
    tensor = v2.functional.pil_to_tensor(rgb)
    tensor = v2.functional.resize(tensor, size, antialias=True)
    return v2.functional.center_crop(tensor, [size, size])


def load_image(path: str, size: int, skip_unreadable: bool) -> torch.Tensor | None:
    """``read_patch``, or None (with a warning naming the file) for a file that cannot be decoded."""
    try:
        return read_patch(path, size)
    except UNREADABLE as error:
        if not skip_unreadable:
            message = f"Unreadable image {path} ({error}); remove it or set data.skip_unreadable=true."
            raise UserError(message) from error
        log.warning("Skipping unreadable image %s (%s)", path, error)
        return None
