"""Where the images of an ImageFolder are: ``<root>/<class>/*`` or ``<root>/train|val|test/<class>/*``, and the
stratified, seeded validation split of a folder that has no ``val/``.

torchvision's ``ImageFolder`` lists one folder; deciding which folders a user's copy holds, and holding out the same
share of every class, is what this module adds (scikit-learn's ``train_test_split(stratify=...)`` would do the
split, but it is not a dependency, and the split must be reproducible from the seed alone, with no other state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from alexnet.errors import UserError

SPLITS = ("train", "val", "test")
LAYOUT = """Expected layout (one folder per class, any image size; the folder names are the class names):
  <data.root>/<class>/*.jpg ...                  (a validation share of each class is held out: data.val_size)
or
  <data.root>/train/<class>/*.jpg ...   <data.root>/val/<class>/*.jpg ...   (optional <data.root>/test/<class>/)"""


@dataclass(frozen=True)
class FolderLayout:
    """The class folders of each split found under a root: ``train`` always; ``val`` and ``test`` when present."""

    root: Path
    folders: dict[str, Path]  # split -> the folder holding its class folders

    @property
    def has_val(self) -> bool:
        return "val" in self.folders


def class_folders(folder: Path) -> list[str]:
    """The class folder names directly under ``folder``, sorted (hidden folders such as ``.ipynb_checkpoints``
    left out)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_layout(root: Path, name: str = "ImageFolder") -> FolderLayout:
    """Which of the two layouts ``root`` holds; refuses a root that is neither."""
    if not root.is_dir():
        raise UserError(f"{name}: data.root={root} is not a folder.\n{LAYOUT}")
    if (root / "train").is_dir():
        return FolderLayout(root, {s: root / s for s in SPLITS if (root / s).is_dir()})
    if (root / "val").is_dir():
        raise UserError(f"{name}: {root} has a val/ folder but no train/ folder beside it.\n{LAYOUT}")
    if not class_folders(root):
        raise UserError(f"{name}: no class folders under data.root={root}.\n{LAYOUT}")
    return FolderLayout(root, {"train": root})


def held_out_count(val_size: int | float, total: int, smallest_class: int, classes: int) -> int:
    """How many of ``total`` images ``data.val_size`` holds out: every class must keep a training image and, when
    anything is held out, give at least one to validation."""
    n_val = round(val_size * total) if isinstance(val_size, float) else int(val_size)
    if n_val < classes or total - n_val < classes or smallest_class < 2:
        raise UserError(
            f"data.val_size={val_size} cannot hold out a share of every class of {total} images in {classes} classes "
            f"(the smallest class has {smallest_class}): each class needs an image on both sides. Use a count from "
            f"{classes} to {total - classes} (or a fraction), add images, or give a val/ folder."
        )
    return n_val


def stratified_split(targets: list[int], val_size: int | float, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, validation indices) of ``targets``, sorted: each class gives ``val_size``'s share of its
    images (at least one, leaving at least one), chosen by a generator seeded with ``seed`` alone."""
    labels = torch.tensor(targets, dtype=torch.long)
    classes = int(labels.max()) + 1 if len(labels) else 0
    counts = torch.bincount(labels, minlength=classes)
    n_val = held_out_count(val_size, len(labels), int(counts.min()) if classes else 0, classes)
    # Largest-remainder apportionment: the class shares add up to n_val exactly.
    exact = counts.double() * n_val / len(labels)
    share = exact.floor().long().clamp(1)
    share = torch.minimum(share, counts - 1)
    order = torch.argsort(exact - exact.floor(), descending=True, stable=True)
    for c in order.tolist():
        if int(share.sum()) >= n_val:
            break
        if share[c] < counts[c] - 1:
            share[c] += 1
    generator = torch.Generator().manual_seed(seed)
    val: list[int] = []
    for c in range(classes):
        members = torch.nonzero(labels == c).flatten()
        val += members[torch.randperm(len(members), generator=generator)[: int(share[c])]].tolist()
    held = set(val)
    return [i for i in range(len(labels)) if i not in held], sorted(val)
