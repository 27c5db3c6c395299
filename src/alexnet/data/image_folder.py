"""Any ImageFolder as data (``data=image_folder``): a user's own photos, in class folders.

A subclass of the ImageNet folder module rather than a generalised ``data=imagenet``: it shares that module's
decoding rules (every mode and orientation ``as_seen``, unreadable files skipped and named, links counted once) and
its on-device pipeline (crops, flips, 10-crop test, normalisation), while ImageNet keeps its own strict layout and
its 1000-class defaults. What it adds (``folder_layout.py``): ``<root>/<class>/*`` as well as
``<root>/train|val|test/<class>/*``; without a ``val/`` folder a stratified, seeded share of the training images
(``val_size``, ``split_seed``) is held out. That split is part of the module's ``state_dict``, so it travels in
every checkpoint: a resumed run, ``alexnet-eval`` and ``alexnet-figures`` see the very images the run held out,
even if files were added to the folder since; ``alexnet.run`` also writes it into the run folder
(``data_split.json``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset

from alexnet.config.rules import check_values
from alexnet.data.folder_layout import LAYOUT, FolderLayout, class_folders, find_layout, stratified_split
from alexnet.data.image_files import ClassFolders
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.data.mean_image import files_fingerprint
from alexnet.errors import UserError

log = logging.getLogger(__name__)


class VisibleClassFolders(ClassFolders):
    """``ClassFolders`` whose classes are the visible folders (not ``.ipynb_checkpoints``, ``.git``...)."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = class_folders(Path(directory))
        return classes, {name: i for i, name in enumerate(classes)}


class ImageFolderDataModule(ImageNetDataModule):
    """Class folders of any images, with or without a ``val/`` folder (see ``folder_layout.LAYOUT``).

    Args:
        root: the folder holding the class folders, or ``train/`` (+ ``val/``, ``test/``) with class folders.
        val_size: without ``val/``: images held out of the training folder, as a count or a fraction, the same
            share of every class (ignored when ``val/`` exists).
        split_seed: seed of that split, independent of the run's seed.
        **settings: as ``ImageNetDataModule`` (``num_classes``, ``resize_size``, ``mean``, ``std``...).
    """

    NAME, LAYOUT_HELP, FOLDERS = "ImageFolder", LAYOUT, VisibleClassFolders

    def __init__(self, root: str, val_size: int | float = 0.2, split_seed: int = 42, **settings: Any) -> None:
        check_values({"data.val_size": val_size, "data.split_seed": split_seed})
        super().__init__(root, **settings)
        self.val_size, self.split_seed = val_size, split_seed
        self.held_out: list[str] | None = None  # without val/: the validation files, relative to the train folder
        if self.num_classes < 2 and self.root.is_dir():  # the config's count of a root with 0 or 1 class folders
            find_layout(self.root)  # names what is missing
            raise UserError(
                f"ImageFolder: {self.root} holds one class folder; a classifier needs two or more.\n{LAYOUT}"
            )

    @property
    def layout(self) -> FolderLayout:
        return find_layout(self.root)

    def _class_folders(self, split: str) -> list[str]:
        return class_folders(self.layout.folders[split])

    def wnids(self) -> list[str] | None:
        return self._class_folders("train") if self.root.is_dir() else None

    def _folder(self, split: str) -> ClassFolders:
        """All images of one split's folder, checked against the training folder's classes."""
        folders = self.layout.folders
        train = self._class_folders("train") if split != "train" else None
        return self._checked_class_folders(split, folders[split], self._class_folders(split), folders["train"], train)

    def _split(self, split: str) -> Dataset:
        if split in self.datasets:
            return self.datasets[split]
        layout = self.layout
        if split == "test" and "test" not in layout.folders:
            split_dataset = self._split("val")  # no test/: the validation images, as ImageNet's val/
        elif split in ("train", "val") and not layout.has_val:
            train, val = self._held_out_split(self._folder("train"))
            self.datasets["train"], self.datasets["val"] = train, val
            return self.datasets[split]
        else:
            split_dataset = self._folder(split)
        self.datasets[split] = split_dataset
        return split_dataset

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)  # test/ when there is one, else the validation images

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _held_out_split(self, everything: ClassFolders) -> tuple[Subset, Subset]:
        """The training folder as (training, validation) subsets: the recorded split when there is one (a checkpoint
        or an earlier setup), else a fresh stratified one of ``val_size``."""
        folder = Path(everything.root)
        relative = [str(Path(path).relative_to(folder)) for path, _ in everything.samples]
        if self.held_out is None:
            _, val_indices = stratified_split(everything.targets, self.val_size, self.split_seed)
            self.held_out = [relative[i] for i in val_indices]
            log.info(
                "No val/ folder under %s: holding out %d of %d images for validation (data.val_size=%s, "
                "data.split_seed=%s), the same share of every class.",
                folder, len(val_indices), len(relative), self.val_size, self.split_seed,
            )  # fmt: skip
        index = {path: i for i, path in enumerate(relative)}
        missing = [path for path in self.held_out if path not in index]
        if missing:
            raise UserError(
                f"ImageFolder: {len(missing)} of the {len(self.held_out)} validation images this run held out are no "
                f"longer in {folder} (e.g. {missing[0]}); restore them, or start a new run (a new split)."
            )
        val = sorted(index[path] for path in self.held_out)
        held = set(val)
        return Subset(everything, [i for i in range(len(relative)) if i not in held]), Subset(everything, val)

    def split_record(self) -> dict[str, Any] | None:
        """The held-out split as the run folder records it (``data_split.json``); None with a ``val/`` folder."""
        if self.held_out is None:
            return None
        return {"val_size": self.val_size, "split_seed": self.split_seed, "val": list(self.held_out)}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = super().state_dict()
        if self.held_out is not None:
            state["held_out"] = list(self.held_out)  # strings: weights_only=True loads them
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "held_out" in state_dict:
            # Lightning restores this after setup() has split: the split is made again from the record.
            self.held_out = list(state_dict["held_out"])
            for split in ("train", "val", "test"):
                self.datasets.pop(split, None)

    def _fingerprint(self) -> str:
        train = self._split("train")
        if isinstance(train, Subset):  # the mean of the images trained on, not of those held out
            paths = [train.dataset.samples[i][0] for i in train.indices]
        else:
            paths = [path for path, _ in train.samples]
        return files_fingerprint(self.layout.folders["train"], paths, f"image_folder resize_size={self.resize_size}")
