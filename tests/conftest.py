"""Shared fixtures: Fashion-MNIST IDX files written into temp folders, config composition, CLI runs."""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import logging
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import alexnet.run.folder  # noqa: F401  (registers the resolvers that place a run's folder)
from alexnet.config.location import CONFIG_DIR
from alexnet.data.fashion_mnist import write_idx

BIN = Path(sys.executable).parent


def learnable_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28x28 noise with a bright 7x7 block whose position (one of 10 on a grid) is the class."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28))
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[i, 2 + row * 9 : 9 + row * 9, 1 + col * 7 : 8 + col * 7] = 230
    return images


def make_fashion_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", learnable_images(labels, rng))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small learnable Fashion-MNIST-format set: 400 training and 100 test images."""
    return make_fashion_mnist(tmp_path_factory.mktemp("fashion"), n_train=400, n_test=100)


def compose_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as the CLI would, without Hydra's own node: what Hydra would fill in (the run
    folder, the working folder) comes from the overrides (``paths.output_dir=...``, ``paths.root_dir=...``)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def train_config(tmp_path: Path, data_root: Path, overrides: list[str] = (), fashion: bool = True) -> DictConfig:
    """A train config that writes into ``tmp_path``, reads ``data_root``, uses the CPU and small batches."""
    fashion_settings = ["data.download=false", "data.val_size=40"] if fashion else []
    return compose_config(
        "train",
        [
            f"paths.root_dir={tmp_path}",
            f"paths.output_dir={tmp_path / 'run'}",
            f"data.root={data_root}",
            *fashion_settings,
            "data.batch_size=4",
            "trainer=cpu",
            "++callbacks.progress_bar=null",  # plain progress output in test logs
            *overrides,
        ],
    )


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a run's ``csv/metrics.csv``."""
    with path.open() as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    """One metric's logged values, in order."""
    return [float(r[name]) for r in rows if r.get(name)]


def run_env() -> dict[str, str]:
    """The environment of a command run as a user would, offline."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run_cli(command: str, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run an installed console script (``alexnet-train`` ...) as a user would, offline."""
    return subprocess.run(
        [str(BIN / command), *args], cwd=cwd, env=run_env(), capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def console_scripts() -> dict[str, str]:
    """``alexnet-train`` -> ``alexnet.train:main``, from pyproject.toml."""
    import tomllib

    return tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]


def run_main(command: str, *args: str, cwd: Path) -> Ran:
    """A console script run in this process as the CLI would run it (its ``main()`` with ``sys.argv`` set, in
    ``cwd``, offline): exit status, stdout and stderr, an uncaught exception printed as its traceback. Costs no
    Python start; Hydra's global state, logging, the working folder and the environment are restored."""
    module, function = console_scripts()[command].split(":")
    main = getattr(importlib.import_module(module), function)
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = sys.argv, os.getcwd(), dict(os.environ)
    os.environ.update(WANDB_MODE="offline")
    os.environ.pop("HYDRA_FULL_ERROR", None)
    GlobalHydra.instance().clear()
    returncode = 0
    try:
        os.chdir(cwd)
        sys.argv = [command, *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exit_:
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
                returncode = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:
                traceback.print_exc()
                returncode = 1
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
        os.environ.clear()
        os.environ.update(saved[2])
        GlobalHydra.instance().clear()
        root.handlers[:] = handlers
        root.setLevel(level)
    return Ran(returncode, out.getvalue(), err.getvalue())


WNIDS = ("n01440764", "n01443537", "n01484850")  # tench, goldfish, great white shark


def write_jpeg(path: Path, size: tuple[int, int], colour: tuple[int, int, int], mode: str = "RGB", fmt: str = "JPEG"):
    """A real image file: a colour field with a gradient, in the given PIL mode and format."""
    from PIL import Image

    width, height = size
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    pixels = np.clip(np.array(colour, dtype=np.float32)[None, None, :] + ramp, 0, 255).astype(np.uint8)
    image = Image.fromarray(np.repeat(pixels, height, axis=0), "RGB").convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def make_imagenet(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """train/ and val/ ImageFolders of real image files: varied sizes, aspect ratios and the modes ImageNet holds
    (RGB, greyscale, CMYK JPEG, and a PNG named .JPEG)."""
    per_class = per_class or {"train": 4, "val": 2}
    sizes = [(300, 260), (260, 400), (512, 300), (280, 280)]
    modes = [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG")]
    for split, count in per_class.items():
        for c, wnid in enumerate(WNIDS):
            colour = [(200, 40, 40), (40, 200, 40), (40, 40, 200)][c]
            for i in range(count):
                mode, fmt = modes[(i + c) % len(modes)]
                write_jpeg(root / split / wnid / f"{wnid}_{i}.JPEG", sizes[(i + c) % len(sizes)], colour, mode, fmt)
    return root


@pytest.fixture(scope="session")
def imagenet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_imagenet(tmp_path_factory.mktemp("imagenet"))


def picture_stats(path: Path) -> tuple[int, float]:
    """The brightest value and the standard deviation of a PNG's pixels, on 0-255."""
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    return int(pixels.max()), float(pixels.std())


def assert_visible(path: Path) -> None:
    """Neither blank nor black: some pixel at least half-bright, and a spread of values."""
    brightest, spread = picture_stats(path)
    assert brightest >= 128 and spread >= 10, f"{path}: max {brightest}, std {spread:.1f} on 0-255"


def truncate(path: Path) -> Path:
    """Cut an image file in half, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_quirky_imagenet(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """``make_imagenet`` (RGB, grey, CMYK, PNG named .JPEG) plus one truncated file in each split."""
    make_imagenet(root, per_class)
    for split in ("train", "val"):
        truncate(root / split / WNIDS[0] / f"{WNIDS[0]}_0.JPEG")
    return root


def make_prepared(root: Path, source: Path, **settings: object) -> Path:
    """``alexnet-prepare``'s output for ``source``, written in this process with one worker."""
    from alexnet.data.imagenet.prepared_writer import PatchSettings, prepare

    prepare(str(source), str(root), PatchSettings(**settings), num_workers=1)
    return root


@pytest.fixture(scope="session")
def quirky_imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 3 validation files per class (one truncated in class 0 of each split)."""
    return make_quirky_imagenet(tmp_path_factory.mktemp("quirky_imagenet"), {"train": 4, "val": 3})


@pytest.fixture(scope="session")
def prepared_jpeg(tmp_path_factory: pytest.TempPathFactory, quirky_imagenet: Path) -> Path:
    return make_prepared(tmp_path_factory.mktemp("prepared") / "jpeg", quirky_imagenet)


@pytest.fixture(scope="session")
def prepared_raw(tmp_path_factory: pytest.TempPathFactory, quirky_imagenet: Path) -> Path:
    return make_prepared(tmp_path_factory.mktemp("prepared") / "raw", quirky_imagenet, format="raw")


# Regions of matplotlib's bundled portrait of Grace Hopper (512x600), (left, top, right, bottom): each a class of
# real photo crops for the fine-tuning tests, e.g. "face" against "jacket" against "sky".
PHOTO_REGIONS = {
    "face": (185, 160, 345, 330),
    "jacket": (40, 430, 190, 600),
    "sky": (390, 0, 512, 190),
    "stars": (0, 0, 120, 190),
    "stripes": (0, 250, 60, 450),
    "cap": (165, 25, 365, 110),
    "ribbons": (320, 480, 460, 535),
    "shirt": (205, 390, 285, 560),
}


def make_photo_folder(root: Path, classes: list[str], per_class: int, seed: int = 0, start: int = 0) -> Path:
    """``<root>/<class>/<class>_<i>.jpg``: crops of the photo's region of each class, at random places, sizes and
    aspect ratios (JPEG, or PNG for every fourth), mirrored at random: real images that differ inside a class."""
    import matplotlib.cbook
    from PIL import Image

    rng = np.random.default_rng(seed)
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as photo:
        photo = photo.convert("RGB")
        for name in classes:
            left, top, right, bottom = PHOTO_REGIONS[name]
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(start, start + per_class):
                w = int((right - left) * rng.uniform(0.5, 1.0))
                h = int(min(bottom - top, w * rng.uniform(0.6, 1.6)))
                x, y = int(rng.integers(left, right - w + 1)), int(rng.integers(top, bottom - h + 1))
                crop = photo.crop((x, y, x + w, y + h))
                scale = rng.uniform(0.6, 1.4)
                crop = crop.resize((max(40, int(w * scale)), max(40, int(h * scale))))
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                suffix = "png" if i % 4 == 3 else "jpg"
                crop.save(folder / f"{name}_{i}.{suffix}")
    return root


# A torchvision-shaped net (same layer names as torchvision's alexnet()), small enough to train in a test.
TINY_TORCHVISION = ["model=torchvision", "model.input_size=67", "model.channels=[8,16,16,16,16]",
                    "model.hidden_size=32", "data.resize_size=76", "data.num_workers=0", "data.pin_memory=false",
                    "data.prefetch_factor=1"]  # fmt: skip
