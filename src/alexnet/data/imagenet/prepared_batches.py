"""Whole training batches read straight from ``alexnet-prepare``'s litdata chunks, decoded into reused buffers.

litdata's ``StreamingDataset`` serves one sample per ``__getitem__``: each sample is unpacked into a dict, its
JPEG decoded into a fresh tensor and the batch stacked into NCHW afterwards (a transposing copy, since a decoded
JPEG is HWC memory). At ImageNet's ~3,200 patches a chunk that costs about 5 times the decoding itself. litdata
has no public batch-level read of a chunk, so this module reads its documented chunk format (``index.json`` +
``chunk-*.bin``: ``uint32`` item count, ``uint32`` offsets, each item a ``uint32`` size per field, then the
fields), checked against the litdata versions in ``LITDATA_CHECKED``, and a loader worker

- maps the chunk file and finds every item's image and label with a few numpy gathers;
- decodes a batch's JPEG patches with simplejpeg (libjpeg-turbo, like torchvision's ``decode_jpeg``, with the
  same default DCT and upsampling: identical pixels) straight into one of its reused shared-memory NHWC buffers;
- copies raw patches (stored CHW) into an NCHW buffer as they are: raw batches are the hand-off floor;
- for ``decode=device`` only slices the JPEG bytes.

The order is litdata's kind of full shuffle, reseeded every epoch: the chunks in a random order, every chunk's
items permuted, then each DDP rank a contiguous share of that order (equal shares for training; evaluation keeps
every sample once, the rest going to the last rank) and each loader worker a contiguous run of its rank's
batches, so that a worker reads its own chunks. ``PreparedBatches`` is the loader Lightning sees: its
``state_dict`` (epoch and batches served) is stored in every checkpoint and a mid-epoch resume continues the same
epoch's order where it stopped. A bucket's chunks are downloaded into ``cache_dir`` when a worker first needs them
(the next ones in the background) and kept there.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from alexnet.data.storage import _provider, is_remote, join, read_text
from alexnet.errors import UserError

# litdata versions whose chunk format (below) this module was checked against; tests pin the installed one.
LITDATA_CHECKED = ("0.2.76",)
FIELDS = ("image", "label", "wnid", "file")  # the fields alexnet-prepare writes, in litdata's flattened order
DATA_FORMATS = {"jpeg": ["bytes", "int", "str", "str"], "raw": ["tensor", "int", "str", "str"]}
RAW_HEADER = 8 + 4 * 3  # litdata's tensor serializer: >II (dtype index, rank), >3I shape, then the bytes


def damaged(path: str, what: str) -> UserError:
    return UserError(
        f"{path}: {what}, so the prepared set is damaged (an interrupted copy or a disk fault). Copy it again, or "
        "write it again with alexnet-prepare source=<ImageFolder copy> output=<the set> overwrite=true."
    )


def check_chunk_files(location: str, index: dict[str, Any]) -> None:
    """Every chunk the index lists is there with the size it was written with (a local set: one stat each, so that
    a missing or cut chunk is named before training, not when an epoch reaches it)."""
    if is_remote(location):
        return  # checked as each chunk is fetched
    for chunk in index["chunks"]:
        path = os.path.join(location, chunk["filename"])
        if not os.path.isfile(path):
            raise damaged(path, "this chunk is missing")
        if (size := os.path.getsize(path)) != chunk["chunk_bytes"]:
            raise damaged(path, f"this chunk holds {size:,} bytes, not its {chunk['chunk_bytes']:,}")


def chunk_index(location: str, format: str) -> dict[str, Any]:
    """A split's ``index.json``, refused unless it is the plain chunk format this module reads."""
    text = read_text(join(location, "index.json"))
    if text is None:
        raise UserError(f"{location} has no index.json: prepare it again with alexnet-prepare.")
    try:
        index = json.loads(text)
        config = index["config"]
        spec = json.loads(config["data_spec"])[1]
        plain = (
            config.get("data_format") == DATA_FORMATS[format]
            and json.loads(spec["context"]) == list(FIELDS)
            and not config.get("compression")
            and not config.get("encryption")
            and config.get("item_loader") == "PyTreeLoader"
        )
        chunks = [(c["filename"], int(c["chunk_size"]), int(c["chunk_bytes"])) for c in index["chunks"]]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:  # cut or edited by hand
        raise damaged(join(location, "index.json"), f"it cannot be read as litdata's chunk index ({error!r})") from None
    if not all(isinstance(name, str) and "/" not in name for name, _, _ in chunks):
        raise damaged(join(location, "index.json"), "it names a chunk outside its folder")
    if not plain:
        raise UserError(
            f"{location} was written in a chunk layout this loader does not read (litdata {version('litdata')}; "
            f"checked: {', '.join(LITDATA_CHECKED)}); write it again with this project's alexnet-prepare."
        )
    return index


class Chunk:
    """One chunk file, memory-mapped: where each item's image lies, and every item's label."""

    def __init__(self, path: str, format: str, items: int) -> None:
        try:
            with open(path, "rb") as file:
                self.map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:  # ValueError: an empty file cannot be mapped
            raise damaged(path, f"this chunk cannot be read ({error})") from None
        self.path = path
        data = np.frombuffer(self.map, dtype=np.uint8)
        # litdata's header: the item count, then count + 1 offsets, the last one the file's end
        header = 4 * (items + 2)
        count = int(np.frombuffer(self.map, dtype=np.uint32, count=1)[0]) if len(data) >= header else -1
        ends = np.frombuffer(self.map, dtype=np.uint32, count=items + 1, offset=4) if count >= 0 else np.zeros(1)
        ends = ends.astype(np.int64)
        smallest = 4 * len(FIELDS) + 8  # an item's field sizes, an empty image and its label
        if count != items or ends[0] < header or ends[-1] != len(data) or np.any(np.diff(ends) < smallest):
            raise damaged(path, f"this chunk's header does not describe its {items} items")
        offsets = ends[:-1]
        # Each item starts with one uint32 size per field: gather the image's and read the label after it.
        sizes = data[offsets[:, None] + np.arange(4 * len(FIELDS))].view("<u4")
        self.starts = offsets + 4 * len(FIELDS)
        self.lengths = sizes[:, 0].astype(np.int64)
        if np.any(self.starts + self.lengths + 8 > ends[1:]):
            raise damaged(path, "an item's image runs past the item's end")
        self.labels = data[(self.starts + self.lengths)[:, None] + np.arange(8)].view("<i8")[:, 0].copy()
        if format == "raw":  # the stored tensor's header, then C x H x W uint8
            self.starts, self.lengths = self.starts + RAW_HEADER, self.lengths - RAW_HEADER
        # Python lists and one memoryview: indexing them costs well under a microsecond an item, numpy scalars
        # and torch item assignment several (per-item overheads add up to a tenth of the decoding otherwise).
        self._starts: list[int] = self.starts.tolist()
        self._ends: list[int] = (self.starts + self.lengths).tolist()
        self.view = memoryview(self.map)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, item: int) -> memoryview:
        return self.view[self._starts[item] : self._ends[item]]


def epoch_order(sizes: list[int], shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """Every sample of the split as (chunk, item) rows, in this epoch's order: chunks in a random order, each
    chunk's items permuted (both reseeded per epoch), or the stored order without shuffling."""
    if not shuffle:
        return np.concatenate([np.stack([np.full(n, c), np.arange(n)], 1) for c, n in enumerate(sizes)])
    rng = np.random.default_rng([seed, epoch])
    return np.concatenate([np.stack([np.full(sizes[c], c), rng.permutation(sizes[c])], 1)
                           for c in rng.permutation(len(sizes))])  # fmt: skip


def rank_share(count: int, rank: int, world_size: int, drop_last: bool) -> tuple[int, int]:
    """The rank's contiguous [start, end) of an epoch's order: equal shares (training), or every sample once
    with the rest on the last rank (evaluation)."""
    share = count // world_size
    end = count if not drop_last and rank == world_size - 1 else (rank + 1) * share
    return rank * share, end


def worker_batches(batches: int, workers: int) -> np.ndarray:
    """Position in the rank's batches of the ``s``-th batch the loader yields: a DataLoader hands index ``s`` to
    worker ``s % workers``, and worker ``w`` should read one contiguous run of batches (its own chunks)."""
    workers = max(workers, 1)
    counts = [len(range(w, batches, workers)) for w in range(workers)]
    firsts = np.cumsum([0, *counts[:-1]])
    served = np.arange(batches)
    return firsts[served % workers] + served // workers


class ChunkBatches(Dataset):
    """Batch ``s`` of one rank's epoch: ``(images, labels)``, read and decoded by whichever worker gets ``s``.

    images: uint8 NHWC for JPEG patches (one of the worker's reused shared buffers in a worker), NCHW for raw
    ones, or a list of 1-D JPEG byte tensors (``encoded``: decoded later on the device).
    """

    def __init__(self, plan: dict[str, Any], index: dict[str, Any], local_dir: str | None) -> None:
        self.plan, self.local_dir = plan, local_dir
        self.files = [c["filename"] for c in index["chunks"]]
        self.sizes = [c["chunk_size"] for c in index["chunks"]]
        self._order: np.ndarray | None = None
        self._positions = worker_batches(plan["batches"], plan["workers"])
        self._chunks: dict[int, Chunk] = {}
        self._downloads: dict[int, Future] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._rings: dict[tuple[int, ...], list[torch.Tensor]] = {}
        self._turn = 0

    def __len__(self) -> int:
        return self.plan["batches"]

    def rows(self, served: int) -> np.ndarray:
        """The (chunk, item) rows of the ``served``-th batch."""
        if self._order is None:  # computed in the worker: the plan travels as a few numbers
            plan = self.plan
            order = epoch_order(self.sizes, plan["shuffle"], plan["seed"], plan["epoch"])
            self._order = order[plan["start"] : plan["end"]]
        first = int(self._positions[served]) * self.plan["batch_size"]
        return self._order[first : first + self.plan["batch_size"]]

    # -- chunk files, local or fetched from the bucket ------------------------------------------------------------

    def _local_path(self, chunk: int) -> str:
        return os.path.join(self.local_dir or self.plan["location"], self.files[chunk])

    def _download(self, chunk: int) -> None:
        path = self._local_path(chunk)
        if os.path.exists(path):
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        partial = f"{path}.{os.getpid()}.partial"
        _provider(self.plan["location"]).download_file(join(self.plan["location"], self.files[chunk]), partial)
        os.replace(partial, path)  # atomic: another worker reading the same chunk never sees half a file

    def _fetch_ahead(self, chunks: set[int]) -> None:
        if self.local_dir is None:
            return
        self._pool = self._pool or ThreadPoolExecutor(2)
        for chunk in chunks - set(self._downloads) - set(self._chunks):
            self._downloads[chunk] = self._pool.submit(self._download, chunk)

    def _chunk(self, chunk: int) -> Chunk:
        if chunk not in self._chunks:
            if self.local_dir is not None:
                self._fetch_ahead({chunk})
                self._downloads.pop(chunk).result()
            if len(self._chunks) >= 4:  # a worker moves through its chunks in order: keep the last few mapped
                self._chunks.pop(next(iter(self._chunks)))
            self._chunks[chunk] = Chunk(self._local_path(chunk), self.plan["format"], self.sizes[chunk])
        return self._chunks[chunk]

    # -- batches ---------------------------------------------------------------------------------------------------

    def _buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A worker's batches go through ``depth`` reused shared-memory buffers (see ``data/batch_buffers.py``:
        fresh shared memory per batch costs as much as decoding); in the main process each batch is new."""
        if get_worker_info() is None or not self.plan["reuse_buffers"]:
            return torch.empty(shape, dtype=torch.uint8)
        ring = self._rings.get(shape)
        if ring is None:  # one ring per shape: the last batch of an epoch may be smaller
            depth = self.plan["buffer_depth"]
            ring = self._rings[shape] = [torch.empty(shape, dtype=torch.uint8).share_memory_() for _ in range(depth)]
        self._turn += 1
        return ring[self._turn % len(ring)]

    def __getitem__(self, served: int) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        rows = self.rows(served)
        if self.local_dir is not None and self.plan["workers"] > 0:  # the chunks of this worker's next batch
            ahead = served + max(self.plan["workers"], 1)
            if ahead < len(self):
                self._fetch_ahead({int(c) for c in self.rows(ahead)[:, 0]})
        side, encoded, jpeg = self.plan["side"], self.plan["encoded"], self.plan["format"] == "jpeg"
        images: Any = (
            [] if encoded else self._buffer((len(rows), side, side, 3) if jpeg else (len(rows), 3, side, side))
        )
        pixels = None if encoded else images.numpy()
        labels = np.empty(len(rows), dtype=np.int64)
        # The order keeps a chunk's items together: one chunk lookup and one label gather per run of them.
        chunks = rows[:, 0]
        bounds = [0, *(np.flatnonzero(chunks[1:] != chunks[:-1]) + 1).tolist(), len(rows)]
        for first, end in pairwise(bounds):
            chunk = self._chunk(int(chunks[first]))
            items = rows[first:end, 1]
            labels[first:end] = chunk.labels[items]
            for k, item in enumerate(items.tolist(), start=first):
                data = chunk.image(item)
                if encoded:
                    images.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
                elif jpeg:
                    try:
                        simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=pixels[k])  # libjpeg-turbo's defaults
                    except ValueError as error:  # not a JPEG, or not one of the set's patch size
                        raise damaged(chunk.path, f"item {item} is not a {side}x{side} JPEG patch ({error})") from None
                elif len(data) == pixels[k].size:
                    pixels[k].reshape(-1)[:] = np.frombuffer(data, dtype=np.uint8)
                else:
                    raise damaged(chunk.path, f"item {item} holds {len(data):,} bytes, not a raw {side}x{side} patch")
        return images, torch.from_numpy(labels)


class EpochCounter:
    """What Lightning calls ``set_epoch`` on (it looks for a loader's ``sampler``)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class PreparedBatches:
    """The loader of one split on one rank: whole batches from ``ChunkBatches`` through a DataLoader's workers.

    Args:
        location: the split's folder or bucket prefix; cache_dir: where a bucket's chunks are kept (required for
            a bucket).
        format: the manifest's ``jpeg`` or ``raw``; side: the patches' side; encoded: hand out JPEG bytes.
        batch_size: per rank; shuffle: training order (full shuffle, reseeded per epoch; drops the last partial
            batch, equal on every rank) or the stored order (every sample once over the ranks).
        seed, rank, world_size, num_workers, pin_memory, prefetch_factor: as they say.
        reuse_buffers: workers write into reused shared buffers; only for a consumer that is done with a batch
            ``prefetch_factor + 3`` batches later (Lightning's training loop).
    """

    def __init__(
        self,
        location: str,
        cache_dir: str | None,
        format: str,
        side: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        encoded: bool = False,
        reuse_buffers: bool = False,
    ) -> None:
        if is_remote(location) and cache_dir is None:
            raise ValueError("a bucket's chunks need a local cache_dir")
        self.index = chunk_index(location, format)
        check_chunk_files(location, self.index)
        self.location, self.cache_dir = location, cache_dir
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self.sampler, self.batch_sampler = EpochCounter(), None
        count = sum(c["chunk_size"] for c in self.index["chunks"])
        self._start, self._end = rank_share(count, rank, world_size, drop_last=shuffle)
        share = self._end - self._start
        self._batches = share // batch_size if shuffle else -(-share // batch_size)
        self._plan = {
            "location": location, "format": format, "side": side, "encoded": encoded, "batch_size": batch_size,
            "shuffle": shuffle, "seed": seed, "start": self._start, "end": self._end, "batches": self._batches,
            "workers": num_workers, "reuse_buffers": reuse_buffers, "buffer_depth": (prefetch_factor or 2) + 3,
        }  # fmt: skip
        self._served = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches served) from a mid-epoch checkpoint

    def __len__(self) -> int:
        return self._batches

    def state_dict(self) -> dict[str, int]:
        """Position in the epoch (Lightning stores it in every checkpoint)."""
        return {"epoch": self.sampler.epoch, "served": self._served,
                "num_samples_yielded": self._served * self.batch_size}  # fmt: skip

    def load_state_dict(self, state: dict[str, int]) -> None:
        # Lightning restores an epoch-end checkpoint into the next epoch too: the position counts only for the
        # epoch it was saved in.
        self._resume = (int(state["epoch"]), int(state["served"]))

    def batches(self) -> ChunkBatches:
        plan = {**self._plan, "epoch": self.sampler.epoch}
        return ChunkBatches(plan, self.index, self.cache_dir)

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        epoch = self.sampler.epoch
        first = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume, self._served = None, first
        loader = DataLoader(
            self.batches(),
            batch_size=None,  # the dataset returns whole batches
            sampler=range(first, self._batches),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            # Its own generator: a DataLoader otherwise draws its workers' base seed from the global RNG, which
            # would shift the crops and dropout after a resume (one extra iterator).
            generator=torch.Generator().manual_seed(self.seed),
        )
        for batch in loader:
            self._served += 1
            yield batch
