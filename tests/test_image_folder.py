"""data=image_folder: any class folders of real photos, with or without val/; the held-out split is stratified,
seeded, carried in the data module's state (so in checkpoints) and unchanged by files added later."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from alexnet.data.folder_layout import stratified_split
from alexnet.data.image_folder import ImageFolderDataModule
from alexnet.errors import UserError
from conftest import compose_config, make_photo_folder

CLASSES = ["face", "jacket", "sky"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 crops of each of 3 regions of a real photo, in <root>/<class>/ (no val/)."""
    return make_photo_folder(tmp_path_factory.mktemp("photos") / "photos", CLASSES, 10)


def datamodule(root: Path, **settings: object) -> ImageFolderDataModule:
    defaults = {"num_classes": 3, "input_size": 67, "resize_size": 76, "batch_size": 4, "num_workers": 0,
                "pin_memory": False, "test_crops": 1}  # fmt: skip
    return ImageFolderDataModule(root=str(root), **{**defaults, **settings})


def files(dataset: Subset) -> list[str]:
    return [Path(dataset.dataset.samples[i][0]).name for i in dataset.indices]


def test_a_folder_without_val_is_split_per_class_by_its_seed(photos: Path) -> None:
    data = datamodule(photos, val_size=0.2, split_seed=7)
    data.setup("fit")
    train, val = data.dataset("train"), data.dataset("val")
    assert (len(train), len(val)) == (24, 6)
    assert sorted(Path(data.datasets["val"].dataset.samples[i][0]).parent.name for i in val.indices) == [
        "face", "face", "jacket", "jacket", "sky", "sky"
    ]  # fmt: skip
    assert not set(files(train)) & set(files(val))
    assert data.class_names() == CLASSES  # the folder names, in label order
    image, label = train[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 76, 76) and label == 0
    again = datamodule(photos, val_size=0.2, split_seed=7)
    again.setup("fit")
    assert files(again.dataset("val")) == files(val)  # the seed alone decides
    other = datamodule(photos, val_size=0.2, split_seed=8)
    other.setup("fit")
    assert files(other.dataset("val")) != files(val)
    counted = datamodule(photos, val_size=9)  # a count: 3 of each class
    counted.setup("fit")
    assert len(counted.dataset("val")) == 9 and len(counted.dataset("train")) == 21


def test_the_split_apportions_a_count_exactly_over_uneven_classes() -> None:
    targets = [0] * 10 + [1] * 5 + [2] * 3
    train, val = stratified_split(targets, 6, seed=0)
    held = [targets[i] for i in val]
    assert len(val) == 6 and sorted(train + val) == list(range(18))
    assert (held.count(0), held.count(1), held.count(2)) == (3, 2, 1)
    with pytest.raises(UserError, match="data.val_size=17 cannot hold out a share of every class of 18 images"):
        stratified_split(targets, 17, seed=0)


def test_the_split_travels_in_the_state_and_survives_added_files(tmp_path: Path, photos: Path) -> None:
    root = tmp_path / "photos"
    shutil.copytree(photos, root)
    data = datamodule(root)
    data.setup("fit")
    state = data.state_dict()
    held_out = files(data.dataset("val"))
    assert sorted(Path(p).name for p in state["held_out"]) == sorted(held_out)
    make_photo_folder(root, CLASSES, 5, seed=1, start=10)  # more photos since: a fresh split would differ
    fresh = datamodule(root)
    fresh.setup("fit")
    assert files(fresh.dataset("val")) != held_out
    restored = datamodule(root)
    restored.setup("fit")  # Lightning restores the state after setup
    restored.load_state_dict(state)
    assert files(restored.dataset("val")) == held_out and len(restored.dataset("train")) == 24 + 15
    (root / state["held_out"][0]).unlink()
    gone = datamodule(root)
    gone.load_state_dict(state)
    with pytest.raises(UserError, match="1 of the 6 validation images this run held out are no longer in"):
        gone.setup("fit")


def test_train_val_and_test_folders_are_used_as_they_are(tmp_path: Path) -> None:
    make_photo_folder(tmp_path / "train", CLASSES, 4)
    make_photo_folder(tmp_path / "val", CLASSES, 2, seed=1)
    make_photo_folder(tmp_path / "test", CLASSES, 1, seed=2)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    data = datamodule(tmp_path)
    data.setup("fit")
    assert (len(data.dataset("train")), len(data.dataset("val")), len(data.dataset("test"))) == (12, 6, 3)
    assert data.split_record() is None and "held_out" not in data.state_dict()
    assert len(data.test_dataloader().dataset) == 3
    shutil.rmtree(tmp_path / "test")
    no_test = datamodule(tmp_path)
    no_test.setup("test")
    assert len(no_test.test_dataloader().dataset) == 6  # no test/: the validation images


def test_the_config_counts_the_class_folders(photos: Path) -> None:
    cfg = compose_config("train", ["data=image_folder", f"data.root={photos}", "paths.root_dir=/tmp",
                                   "paths.output_dir=/tmp/run"])  # fmt: skip
    assert cfg.data.num_classes == cfg.model.num_classes == 3
    assert (cfg.data.resize_size, list(cfg.data.mean), cfg.data.val_size) == (256, [0.485, 0.456, 0.406], 0.2)


def test_empty_class_folders_and_a_root_without_classes_are_refused(tmp_path: Path, photos: Path) -> None:
    root = tmp_path / "photos"
    shutil.copytree(photos, root)
    (root / "empty").mkdir()
    with pytest.raises(UserError, match="class folders without images in .*: empty"):
        datamodule(root, num_classes=4).setup("fit")
    with pytest.raises(UserError, match="no class folders under data.root="):
        datamodule(tmp_path / "photos" / "empty").setup("fit")
