"""data=imagenet_prepared's batch reader at ImageNet's chunk sizes (2,048 items a chunk here): every sample once
an epoch with its label and torchvision's pixels, a new order every epoch, each DDP rank its own share, a run
killed mid-epoch (SIGKILL) resumed to bit-identical weights, and the litdata chunk format it was checked against."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import traceback
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from litdata import StreamingDataset
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet.config.invocation import Invocation
from alexnet.data.imagenet.prepared_batches import LITDATA_CHECKED, chunk_index, epoch_order, worker_batches
from alexnet.data.imagenet.prepared_reader import PreparedImageNetDataModule
from alexnet.data.imagenet.prepared_writer import PatchSettings, prepare
from alexnet.errors import UserError
from alexnet.run import training
from conftest import WNIDS, train_config

CHUNK = 2048  # items per chunk: ILSVRC-2012 prepared with chunk_bytes=64MB holds ~3,200
PER_CLASS = 1024  # 3 classes: 3,072 training patches in chunks of 2,048 and 1,024
SIDE = 72  # small patches keep it fast; the tiny net's crop is 67 px


def write_small_photos(root: Path, per_class: dict[str, int]) -> None:
    """An ImageFolder of 80x80 photographic JPEGs: random crops of matplotlib's sample photo, with a little noise
    so that no two are alike (the photo's dark background would give equal crops)."""
    photo = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                top, left = rng.integers(0, photo.shape[0] - 80), rng.integers(0, photo.shape[1] - 80)
                crop = photo[top : top + 80, left : left + 80].astype(np.int16) + rng.integers(-8, 9, (80, 80, 3))
                image = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
                image.save(folder / f"{wnid}_{i}.JPEG", quality=90)


@pytest.fixture(scope="module")
def large_chunks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("large_chunks")
    write_small_photos(root / "source", {"train": PER_CLASS, "val": 40})
    settings = PatchSettings(resize_size=SIDE)
    prepare(str(root / "source"), str(root / "prepared"), settings, num_workers=1, chunk_size=CHUNK)
    return root / "prepared"


def module(root: Path, **settings: object) -> PreparedImageNetDataModule:
    options = {"num_classes": 3, "batch_size": 64, "num_workers": 0, "pin_memory": False, "input_size": 67,
               "decode": "cpu", **settings}  # fmt: skip
    data = PreparedImageNetDataModule(root=str(root), **options)
    data.setup("fit")
    return data


def digest(image: torch.Tensor) -> str:
    return hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()


def expected_samples(root: Path, split: str) -> Counter:
    """(label, digest of torchvision's decoding) of every stored sample, read by litdata itself."""
    found = Counter()
    for sample in StreamingDataset(str(root / split)):
        pixels = decode_jpeg(torch.frombuffer(bytearray(sample["image"]), dtype=torch.uint8), mode=ImageReadMode.RGB)
        found[(sample["label"], digest(pixels))] += 1
    return found


def served(data: PreparedImageNetDataModule, split: str, epoch: int = 0) -> list[tuple[int, str]]:
    """(label, digest) of every image the split's loader serves in ``epoch``, in order, as the model gets them."""
    loader = data._loader(split)
    loader.sampler.set_epoch(epoch)
    out = []
    for batch in loader:
        images, labels = data.on_before_batch_transfer(batch, 0)  # NHWC from the workers -> NCHW view
        assert images.shape[1:] == (3, SIDE, SIDE) and images.dtype == torch.uint8
        out += [(int(label), digest(image)) for image, label in zip(images, labels, strict=True)]
    return out


def test_the_chunks_are_imagenet_sized_and_in_the_checked_litdata_format(large_chunks: Path, tmp_path: Path) -> None:
    assert version("litdata") in LITDATA_CHECKED, "check prepared_batches.py's chunk reader against this litdata"
    index = chunk_index(str(large_chunks / "train"), "jpeg")
    assert [c["chunk_size"] for c in index["chunks"]] == [CHUNK, 3 * PER_CLASS - CHUNK]
    changed = shutil.copytree(large_chunks / "val", tmp_path / "val")
    written = json.loads((changed / "index.json").read_text())
    written["config"]["compression"] = "zstd"
    (changed / "index.json").write_text(json.dumps(written))
    with pytest.raises(UserError, match="chunk layout this loader does not read"):
        chunk_index(str(changed), "jpeg")


def test_an_epoch_serves_every_sample_once_with_its_label_and_torchvisions_pixels(large_chunks: Path) -> None:
    data = module(large_chunks, num_workers=1)  # a worker: the reused shared buffers, copied out in `served`
    train = served(data, "train")
    assert len(train) == 3 * PER_CLASS  # 48 full batches of 64: nothing dropped
    assert Counter(train) == expected_samples(large_chunks, "train"), "simplejpeg's pixels are torchvision's"
    val = served(data, "val")
    assert Counter(val) == expected_samples(large_chunks, "val") and len(val) == 120


def test_every_epoch_has_its_own_order_and_the_same_seed_repeats_it(large_chunks: Path) -> None:
    assert module(large_chunks, decode="device").decodes_on_device()  # bytes: cheap to collect

    def order(epoch: int, seed: int = 7) -> list[tuple[int, str]]:
        loader = module(large_chunks, decode="device", seed=seed)._loader("train")
        loader.sampler.set_epoch(epoch)
        return [
            (int(label), digest(image))
            for images, labels in loader
            for image, label in zip(images, labels, strict=True)
        ]

    first, second = order(0), order(1)
    assert sorted(first) == sorted(second) and first != second
    assert order(0) == first and order(0, seed=8) != first
    # Both levels of the shuffle: the chunks' order changes between epochs and items are mixed inside a chunk.
    sizes = [c["chunk_size"] for c in chunk_index(str(large_chunks / "train"), "jpeg")["chunks"]]
    firsts = {int(epoch_order(sizes, True, 7, e)[0, 0]) for e in range(8)}
    assert firsts == {0, 1}
    rows = epoch_order(sizes, True, 7, 0)
    assert not np.array_equal(rows[: sizes[rows[0, 0]], 1], np.arange(sizes[rows[0, 0]]))


def test_each_worker_reads_its_own_run_of_batches() -> None:
    # 10 batches, 3 workers: the DataLoader hands batch s to worker s % 3; worker 0 reads 0-3, 1 reads 4-6, 2 7-9.
    assert worker_batches(10, 3).tolist() == [0, 4, 7, 1, 5, 8, 2, 6, 9, 3]
    assert worker_batches(5, 0).tolist() == [0, 1, 2, 3, 4]


def test_two_ranks_share_the_samples_without_overlap(large_chunks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    every = {split: expected_samples(large_chunks, split) for split in ("train", "val")}  # before WORLD_SIZE is set
    seen = {"train": [], "val": []}
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        data = module(large_chunks, batch_size=32)
        for split in seen:
            seen[split].append(served(data, split))
    train, val = seen["train"], seen["val"]
    for split, count in (("train", 3 * PER_CLASS), ("val", 120)):
        assert len(every[split]) == count, "no two samples alike"
        assert Counter(seen[split][0] + seen[split][1]) == every[split], f"{split}: each sample on one rank, once"
    assert len(train[0]) == len(train[1]) == 1536  # 48 batches of 32 on each rank: equal steps under DDP
    assert len(val[0]) == 60 and len(val[1]) == 60


# -- a run killed mid-epoch ------------------------------------------------------------------------------------------

RUN = ["data=imagenet_prepared", "data.num_classes=3", "model.input_size=67", "model.channels=[8,16,16,16,16]",
       "model.hidden_size=32", "data.batch_size=16", "data.num_workers=1", "data.pin_memory=false",
       "trainer.limit_train_batches=6", "trainer.limit_val_batches=1", "trainer.max_epochs=2", "test=false",
       "trainer.deterministic=true", "callbacks.checkpoint.every_n_train_steps=2"]  # fmt: skip


class KillAtStep(Callback):
    """SIGKILL before the ``count``-th optimizer step: nothing is saved on the way out."""

    def __init__(self, count: int) -> None:
        self.left = count

    def on_before_optimizer_step(self, *args) -> None:
        self.left -= 1
        if not self.left:
            os.kill(os.getpid(), signal.SIGKILL)


def _child(folder: Path, data: Path, overrides: list[str], kill_at: int | None) -> None:
    sys.stdout = sys.stderr = (folder.parent / "runs.log").open("a")
    torch.set_num_threads(1)
    if kill_at is not None:
        build = training.build

        def build_with_killer(cfg, multirun=False):
            run = build(cfg, multirun)
            run.trainer.callbacks.insert(0, KillAtStep(kill_at))
            return run

        training.build = build_with_killer
    code = 0
    try:
        cfg = train_config(folder.parent, data, [*RUN, f"paths.output_dir={folder}", *overrides], fashion=False)
        training.train(cfg, Invocation(overrides=tuple(overrides)))
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    os._exit(code)


def run_child(folder: Path, data: Path, overrides: list[str] = (), kill_at: int | None = None) -> int:
    """One ``alexnet-train`` run in a forked child (torch already imported); its exit status."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    process = multiprocessing.get_context("fork").Process(target=_child, args=(folder, data, list(overrides), kill_at))
    process.start()
    process.join(timeout=300)
    assert process.exitcode is not None, "a run hung"
    return process.exitcode


def test_a_run_killed_mid_epoch_resumes_to_bit_identical_weights(large_chunks: Path, tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference" / "run", tmp_path / "killed" / "run"
    assert run_child(reference, large_chunks) == 0, (reference.parent / "runs.log").read_text()[-3000:]
    assert run_child(killed, large_chunks, kill_at=5) == -signal.SIGKILL  # after the step-4 checkpoint
    last = killed / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 4
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["served"] == 4, "mid-epoch, 4 batches in"
    assert run_child(killed, large_chunks, [f"resume={killed}"]) == 0, (killed.parent / "runs.log").read_text()[-3000:]
    a = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(last, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), "bit-identical"


def test_raw_patches_are_served_as_stored(prepared_raw: Path) -> None:
    data = PreparedImageNetDataModule(root=str(prepared_raw), num_classes=3, batch_size=4, num_workers=0,
                                      pin_memory=False)  # fmt: skip
    data.setup("fit")
    stored = Counter((s["label"], digest(s["image"])) for s in StreamingDataset(str(prepared_raw / "val")))
    got = Counter()
    for batch in data._loader("val"):
        images, labels = data.on_before_batch_transfer(batch, 0)
        assert images.shape[1:] == (3, 256, 256) and images.is_contiguous()  # stored CHW: copied as it is
        got.update((int(label), digest(image)) for image, label in zip(images, labels, strict=True))
    assert got == stored and sum(got.values()) == 8
