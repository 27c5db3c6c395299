"""The prepared loader's peers in ``bench=imagenet``: the same JPEG patches served by webdataset and by
mosaicml-streaming, as their documentation sets them up (a shuffled stream of samples, decoded one by one with
torchvision's ``decode_jpeg``, batched by the loader's collate), one loader worker each.

Both are optional (``pip install -e '.[bench]'``; mosaicml-streaming's pins would downgrade numpy, so ``make
install-bench`` installs it without its dependencies, plus what it really imports); a peer that is not installed
is reported as such. FFCV is not compared: its package builds against the system's OpenCV through pkg-config,
which no package registry here provides.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_jpeg

NOT_INSTALLED = "not installed"
PEERS = {"webdataset": "webdataset", "mosaicml_streaming": "streaming"}  # name in bench.json: module


def installed(peer: str) -> bool:
    return importlib.util.find_spec(PEERS[peer]) is not None


def decoded(data: bytes) -> torch.Tensor:
    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def timed_batches(batches: Iterable, count: int, workers: int) -> float:
    """Images/s per worker over ``count`` batches after one untimed batch (the workers' start)."""
    iterator = iter(batches)
    next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(count):
        images += len(next(iterator)[0])
    return images / (time.perf_counter() - start) / workers


def write_webdataset(patches: list[tuple[bytes, int]], folder: Path, shard_items: int) -> list[str]:
    """Tar shards of ``shard_items`` samples (``<key>.jpg``, ``<key>.cls``), as webdataset's writers lay them."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for first in range(0, len(patches), shard_items):
        path = folder / f"shard-{first // shard_items:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for key, (data, label) in enumerate(patches[first : first + shard_items], start=first):
                for suffix, payload in (("jpg", data), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{key:08d}.{suffix}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        shards.append(str(path))
    return shards


def webdataset_rate(shards: list[str], batch_size: int, workers: int, batches: int) -> float:
    import webdataset as wds

    pipeline = (
        wds.WebDataset(shards, shardshuffle=len(shards), empty_check=False)
        .shuffle(1000)
        .to_tuple("jpg", "cls")
        .map_tuple(decoded, lambda label: int(label))
        .batched(batch_size, partial=False)
    )
    return timed_batches(wds.WebLoader(pipeline, batch_size=None, num_workers=workers), batches, workers)


def write_mds(patches: list[tuple[bytes, int]], folder: Path, shard_items: int) -> None:
    """MDS shards of about ``shard_items`` samples (``size_limit`` is in bytes)."""
    from streaming import MDSWriter

    mean = sum(len(data) for data, _ in patches) / len(patches)
    limit = int(shard_items * (mean + 16))
    with MDSWriter(out=str(folder), columns={"image": "bytes", "label": "int"}, size_limit=limit) as writer:
        for data, label in patches:
            writer.write({"image": data, "label": label})


def mds_rate(folder: Path, batch_size: int, workers: int, batches: int) -> float:
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    class Decoded(StreamingDataset):
        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            sample = super().__getitem__(index)
            return decoded(sample["image"]), sample["label"]

    clean_stale_shared_memory()
    dataset = Decoded(local=str(folder), shuffle=True, batch_size=batch_size, num_canonical_nodes=1)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, drop_last=True)
    return timed_batches(loader, batches, workers)


def peer_loaders(
    patches: list[tuple[bytes, int]], folder: Path, shard_items: int, batch_size: int, workers: int, batches: int
) -> dict[str, Callable[[], float] | str]:
    """Each peer's data written once, and a function timing it (images/s per worker); ``not installed`` else."""
    peers: dict[str, Callable[[], float] | str] = {}
    if installed("webdataset"):
        shards = write_webdataset(patches, folder / "webdataset", shard_items)
        peers["webdataset"] = lambda: webdataset_rate(shards, batch_size, workers, batches)
    else:
        peers["webdataset"] = NOT_INSTALLED
    if installed("mosaicml_streaming"):
        write_mds(patches, folder / "mds", shard_items)
        peers["mosaicml_streaming"] = lambda: mds_rate(folder / "mds", batch_size, workers, batches)
    else:
        peers["mosaicml_streaming"] = NOT_INSTALLED
    return peers
