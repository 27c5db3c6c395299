"""``alexnet-bench bench=imagenet``: ImageNet's loaders side by side, per loader worker, and the training step each.

(i) ``data=imagenet``: every epoch each worker decodes the full-size JPEG with PIL, rescales and crops it;
(ii) ``data=imagenet_prepared`` with ``decode=cpu``: the worker decodes the 256x256 JPEG patches ``alexnet-prepare``
wrote once, a whole batch at a time; (iii) the same with ``decode=device``: workers only read bytes and the GPU
decodes the batch (on a GPU only; null otherwise); raw uint8 patches (no decoding at all); the peers webdataset
and mosaicml-streaming on the same patches (``loader_peers.py``); the decoders alone. Then ``model=paper``'s full
training step (``alexnet-train``'s own objects) with (i), (ii) and (iii).

The photos are prepared with ImageNet's items per chunk (``chunk_items``: ILSVRC-2012 at litdata's 64 MB chunks
holds ~3,200 patches a chunk), the regime in which per-sample overheads show. (ii), the peers and the decoders
alone run in interleaved rounds, and ``loader_fraction_of_decode_ii`` is the median over rounds of (ii) over its
decoder alone (simplejpeg, one thread) in the same round: a shared machine's drift cancels out of it.

The images are photographs, not flat colours (which decode unrealistically fast): matplotlib's bundled sample
photo, randomly cropped, mirrored, tinted and rescaled to ImageNet's typical sizes, saved at JPEG quality 90.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import matplotlib.cbook
import numpy as np
import simplejpeg
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet.bench.loader_peers import peer_loaders
from alexnet.bench.training_paths import apply_fast_paths, gpu_name, synchronize, timed_fit
from alexnet.data.batch_buffers import ReusedBatchBuffers
from alexnet.data.image_files import read_patch
from alexnet.data.imagenet.image_folder import ImageNetDataModule
from alexnet.data.imagenet.pipeline import imagenet_class_names
from alexnet.data.imagenet.prepared_batches import Chunk, chunk_index
from alexnet.data.imagenet.prepared_reader import PreparedImageNetDataModule
from alexnet.data.imagenet.prepared_writer import PatchSettings, prepare
from alexnet.errors import UserError

log = logging.getLogger(__name__)
# ILSVRC-2012's typical sizes (width x height), both orientations; most of its photos are 500 px on the long side.
IMAGE_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 400), (640, 480), (480, 640), (600, 450))
ILSVRC2012_IMAGES = {"train": 1_281_167, "val": 50_000}
PATHS = ("i_imagefolder", "ii_prepared_cpu_decode", "iii_prepared_device_decode")


@functools.cache
def sample_photo() -> Image.Image:
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as source:
        return source.convert("RGB")


def photo(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A different photograph each call: a random crop of the sample photo at the target's aspect ratio, mirrored
    half of the time, tinted, rescaled to ``size``."""
    source = sample_photo()
    width, height = size
    scale = rng.uniform(0.6, 1.0) * min(source.width / width, source.height / height)
    crop_w, crop_h = round(width * scale), round(height * scale)
    left = int(rng.integers(0, source.width - crop_w + 1))
    top = int(rng.integers(0, source.height - crop_h + 1))
    image = source.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    tint = rng.uniform(0.8, 1.2, size=3)
    return Image.fromarray(np.clip(np.asarray(image) * tint, 0, 255).astype(np.uint8))


def write_photo_imagenet(root: Path, classes: int, per_class: dict[str, int], seed: int = 0) -> list[str]:
    """An ImageFolder of photographic JPEGs (quality 90) at ImageNet's sizes; returns the class wnids."""
    rng = np.random.default_rng(seed)
    wnids = sorted(imagenet_class_names())[:classes]
    for split, count in per_class.items():
        for wnid in wnids:
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                size = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
                photo(rng, size).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return wnids


def loader_rate(module: Any, batches: int, device: torch.device) -> float:
    """Images/s the module's training loader delivers as uint8 batches on ``device``, after one untimed batch."""
    module.setup("fit")
    iterator = iter(module.train_dataloader())

    def delivered() -> int:
        batch = next(iterator)
        if hasattr(module, "on_before_batch_transfer"):
            batch = module.on_before_batch_transfer(batch, 0)  # decode=device decodes here
        images = batch[0].to(device, non_blocking=True)
        return len(images)

    delivered()
    synchronize(device)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += delivered()
    synchronize(device)
    return images / (time.perf_counter() - start)


def training_step_rate(cfg: DictConfig, data: DictConfig) -> float:
    """Images/s of ``alexnet-train``'s step (median step time) with ``data`` as the data module."""
    bench = cfg.bench.imagenet
    run_cfg = cfg.copy()
    with open_dict(run_cfg):
        run_cfg.data = data
    too_few = f"raise bench.imagenet.images={bench.images} or lower bench.imagenet.warmup and steps."
    seconds, _ = timed_fit(run_cfg, bench.warmup, bench.steps, too_few)
    return bench.step_batch_size / seconds


def prepared_patches(prepared_jpeg: Path) -> list[tuple[bytes, int]]:
    """The prepared training patches (JPEG bytes, label) in their stored order, read from the chunks."""
    location = str(prepared_jpeg / "train")
    patches = []
    for entry in chunk_index(location, "jpeg")["chunks"]:
        chunk = Chunk(str(prepared_jpeg / "train" / entry["filename"]), "jpeg", entry["chunk_size"])
        patches += [(bytes(chunk.image(i)), int(chunk.labels[i])) for i in range(len(chunk))]
    return patches


def one_thread(measure: Callable[[], Any]) -> Any:
    """``measure()`` with one intra-op thread, as in a loader worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure()
    finally:
        torch.set_num_threads(threads)


def full_decode_rate(source: Path, count: int) -> float:
    """Images/s of (i)'s work alone: PIL decode of the full-size photo, resize, crop."""
    files = sorted(str(p) for p in (source / "train").rglob("*.JPEG"))[:count]
    start = time.perf_counter()
    for path in files:
        read_patch(path, 256)
    return len(files) / (time.perf_counter() - start)


def patch_decode_rate(patches: list[tuple[bytes, int]], decoder: str) -> float:
    """Images/s of decoding the prepared patches alone, one thread: ``simplejpeg`` into a reused array (what
    (ii)'s workers do) or torchvision's ``decode_jpeg`` into a new tensor each (``torchvision_decode_jpeg``: what
    the peers do)."""
    if decoder == "simplejpeg":
        datas = [data for data, _ in patches]
        out = np.empty((256, 256, 3), dtype=np.uint8)
        start = time.perf_counter()
        for data in datas:
            simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
        return len(datas) / (time.perf_counter() - start)
    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data, _ in patches]
    start = time.perf_counter()
    for tensor in tensors:
        decode_jpeg(tensor, mode=ImageReadMode.RGB)
    return len(tensors) / (time.perf_counter() - start)


class BlankPatches(Dataset):
    """uint8 (3, side, side) zeros: a loader worker with nothing to do but hand patches over."""

    def __init__(self, count: int, side: int) -> None:
        self.count, self.side = count, side

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros(3, self.side, self.side, dtype=torch.uint8), 0


def transfer_floor(batch_size: int, workers: int, batches: int, side: int = 256) -> float:
    """Images/s per worker of a DataLoader whose workers only pass uint8 patches to the training process, through
    the reused shared buffers the training loaders use: the ceiling of every path that decodes in the workers,
    set by moving 3 x side x side bytes per image."""
    loader = DataLoader(
        BlankPatches(batch_size * (batches + 1), side),
        batch_size=batch_size,
        num_workers=workers,
        prefetch_factor=2,
        collate_fn=ReusedBatchBuffers(2 + 3),
    )
    iterator = iter(loader)
    next(iterator)
    start, images = time.perf_counter(), 0
    for batch, _ in iterator:
        images += len(batch)
    return images / (time.perf_counter() - start) / workers


def mean_file_bytes(folder: Path) -> float:
    sizes = [p.stat().st_size for p in folder.rglob("*.JPEG")]
    return sum(sizes) / len(sizes)


def imagenet_benchmark(cfg: DictConfig) -> dict[str, Any]:
    """Write the photos, prepare them both ways, time the loaders and the training steps; what bench.json holds."""
    bench = cfg.bench.imagenet
    needed = max(
        bench.batch_size * (bench.loader_batches + 2), bench.step_batch_size * (bench.warmup + bench.steps + 2)
    )
    if bench.images < needed:
        raise UserError(
            f"bench.imagenet.images={bench.images}: the timed batches need at least {needed} training images."
        )
    with open_dict(cfg):
        cfg.model.num_classes = bench.classes  # the model follows the benchmark's classes, not data=fashion_mnist
    prepare_workers = bench.prepare_workers or os.cpu_count() or 1
    output_dir = Path(cfg.paths.output_dir)
    source, jpeg, raw = (output_dir / "data" / name for name in ("imagenet", "prepared_jpeg", "prepared_raw"))
    per_class = -(-bench.images // bench.classes)
    log.info("Writing %d photographic JPEGs to %s", per_class * bench.classes, source)
    write_photo_imagenet(source, bench.classes, {"train": per_class, "val": 1})
    prepare_rates = {}
    for folder, settings in ((jpeg, PatchSettings(jpeg_quality=bench.jpeg_quality)), (raw, PatchSettings("raw"))):
        started = time.perf_counter()
        manifest = prepare(str(source), str(folder), settings, num_workers=prepare_workers,
                           chunk_size=bench.chunk_items)  # fmt: skip
        prepare_rates[settings.format] = manifest["splits"]["train"]["source_files"] / (time.perf_counter() - started)
    apply_fast_paths(cfg, cfg.bench.fast_paths)

    cuda = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    device = torch.device("cuda") if cuda else torch.device("cpu")
    common = {"num_classes": bench.classes, "batch_size": bench.batch_size, "num_workers": bench.workers,
              "pin_memory": cuda}  # fmt: skip
    folder_data = OmegaConf.merge(bench.folder_data, {"root": str(source), **common})
    prepared = OmegaConf.merge(bench.prepared_data, {"root": str(jpeg), **common})
    stepped = {"batch_size": bench.step_batch_size}  # the training steps' batch (model=paper on a CPU is slow)
    datas = {
        "i_imagefolder": folder_data,
        "ii_prepared_cpu_decode": OmegaConf.merge(prepared, {"decode": "cpu"}),
        "iii_prepared_device_decode": OmegaConf.merge(prepared, {"decode": "device"}) if cuda else None,
    }
    modules = {
        "i_imagefolder": lambda: ImageNetDataModule(**_kwargs(datas["i_imagefolder"])),
        "ii_prepared_cpu_decode": lambda: PreparedImageNetDataModule(**_kwargs(datas["ii_prepared_cpu_decode"])),
        "iii_prepared_device_decode": lambda: PreparedImageNetDataModule(
            **_kwargs(datas["iii_prepared_device_decode"])
        ),
        "prepared_raw": lambda: PreparedImageNetDataModule(**_kwargs(OmegaConf.merge(prepared, {"root": str(raw)}))),
    }
    loader: dict[str, float | None] = {}

    def loader_per_worker(name: str) -> float:
        module = modules[name]()
        module.decode_device = device  # where decode=device decodes outside a Trainer
        return loader_rate(module, bench.loader_batches, device) / bench.workers

    for name in ("i_imagefolder", "iii_prepared_device_decode", "prepared_raw"):
        loader[name] = loader_per_worker(name) if name != "iii_prepared_device_decode" or cuda else None
        log.info("loader %s: %s images/s per worker", name, loader[name])
    patches = prepared_patches(jpeg)
    peers = peer_loaders(patches, output_dir / "data" / "peers", bench.chunk_items, bench.batch_size, bench.workers,
                         bench.loader_batches)  # fmt: skip
    # The machine may be shared and its speed drift: (ii), the peers and the decoders alone are timed in
    # interleaved rounds, each loader between two timings of its decoder alone right before and after it, and
    # each ratio is taken within its round.
    sample = patches[: bench.decode_patches]

    def bracketed(decoder: str, loaders: dict[str, Callable[[], float]]) -> tuple[dict[str, float], float]:
        before = one_thread(lambda: patch_decode_rate(sample, decoder))
        rates = {name: measure() for name, measure in loaders.items()}
        return rates, (before + one_thread(lambda: patch_decode_rate(sample, decoder))) / 2

    rounds: list[dict[str, Any]] = []
    for _ in range(bench.rounds):
        timed, simple = bracketed(
            "simplejpeg", {"ii_prepared_cpu_decode": lambda: loader_per_worker("ii_prepared_cpu_decode")}
        )
        peer_timed, tv = bracketed("torchvision_decode_jpeg", {n: p for n, p in peers.items() if callable(p)})
        rounds.append({"loaders": timed | peer_timed, "decode": {"simplejpeg": simple, "torchvision_decode_jpeg": tv}})
        log.info("round %d: loaders %s, decoders alone %s", len(rounds), rounds[-1]["loaders"], rounds[-1]["decode"])

    def over_rounds(value: Callable[[dict[str, Any]], float]) -> float:
        return median(value(r) for r in rounds)

    loader["ii_prepared_cpu_decode"] = over_rounds(lambda r: r["loaders"]["ii_prepared_cpu_decode"])
    fraction = over_rounds(lambda r: r["loaders"]["ii_prepared_cpu_decode"] / r["decode"]["simplejpeg"])
    peer_rates: dict[str, float | str] = {}
    peer_fractions: dict[str, float | str] = {}
    ii_over_peers: dict[str, float | str] = {}
    for name, peer in peers.items():
        if not callable(peer):
            peer_rates[name] = peer_fractions[name] = ii_over_peers[name] = peer
            continue
        peer_rates[name] = over_rounds(lambda r, n=name: r["loaders"][n])
        peer_fractions[name] = over_rounds(lambda r, n=name: r["loaders"][n] / r["decode"]["torchvision_decode_jpeg"])
        ii_over_peers[name] = over_rounds(lambda r, n=name: r["loaders"]["ii_prepared_cpu_decode"] / r["loaders"][n])
    full = one_thread(lambda: full_decode_rate(source, bench.decode_patches // 4))
    decode_only = {
        "i_pil_full_jpeg_resize_crop": full,
        "ii_simplejpeg_prepared_patch": over_rounds(lambda r: r["decode"]["simplejpeg"]),
        "torchvision_decode_jpeg_prepared_patch": over_rounds(lambda r: r["decode"]["torchvision_decode_jpeg"]),
    }
    decode_only["ratio_ii_over_i"] = decode_only["ii_simplejpeg_prepared_patch"] / full
    floor = transfer_floor(bench.batch_size, bench.workers, bench.loader_batches)
    step: dict[str, float | None] = {}
    for name in PATHS:
        data = datas[name]
        step[name] = (
            None if data is None or not bench.steps else training_step_rate(cfg, OmegaConf.merge(data, stepped))
        )
        log.info("training step %s: %s images/s", name, step[name])

    def ratio(rates: dict[str, float | None], name: str) -> float | None:
        return None if rates[name] is None else rates[name] / rates["i_imagefolder"]

    jpeg_manifest = json.loads((jpeg / "manifest.json").read_text())
    jpeg_patch_bytes = jpeg_manifest["splits"]["train"]["bytes"] / jpeg_manifest["splits"]["train"]["images"]
    raw_manifest = json.loads((raw / "manifest.json").read_text())
    raw_patch_bytes = raw_manifest["splits"]["train"]["bytes"] / raw_manifest["splits"]["train"]["images"]
    ilsvrc = sum(ILSVRC2012_IMAGES.values())
    chunk_items = [c["chunk_size"] for c in json.loads((jpeg / "train" / "index.json").read_text())["chunks"]]
    result = {
        "suite": "imagenet",
        "device": str(device),
        "device_name": gpu_name(device),
        "torch": torch.__version__,
        "model_config": OmegaConf.to_container(cfg.model, resolve=True),
        "precision": str(cfg.trainer.precision),
        "batch_size": bench.batch_size,
        "loader_workers": bench.workers,
        "steps": bench.steps,
        "warmup": bench.warmup,
        "images": {
            "train": per_class * bench.classes,
            "sizes": [f"{w}x{h}" for w, h in IMAGE_SIZES],
            "source_mean_bytes": mean_file_bytes(source / "train"),
            "prepared_jpeg_quality": bench.jpeg_quality,
            "prepared_jpeg_mean_bytes": jpeg_patch_bytes,
            "prepared_raw_mean_bytes": raw_patch_bytes,
        },
        "ilsvrc2012_prepared_bytes_estimate": {"jpeg": jpeg_patch_bytes * ilsvrc, "raw": raw_patch_bytes * ilsvrc},
        "prepare_images_per_sec": {**prepare_rates, "workers": prepare_workers},
        "decode_only_images_per_sec_one_thread": decode_only,
        "prepared_items_per_chunk": chunk_items,
        "loader_images_per_sec_per_worker": loader,
        "loader_fraction_of_decode_ii": fraction,
        "peers_images_per_sec_per_worker": peer_rates,
        "peers_fraction_of_their_decode": peer_fractions,
        "ii_over_peers": ii_over_peers,
        "rounds": rounds,
        "loader_transfer_floor_images_per_sec_per_worker": floor,
        "loader_ratio_ii_over_i": ratio(loader, "ii_prepared_cpu_decode"),
        "loader_ratio_iii_over_i": ratio(loader, "iii_prepared_device_decode"),
        "loader_ratio_raw_over_i": ratio(loader, "prepared_raw"),
        "train_step_batch_size": bench.step_batch_size,
        "train_step_images_per_sec": step,
        "train_step_ratio_ii_over_i": ratio(step, "ii_prepared_cpu_decode"),
        "train_step_ratio_iii_over_i": ratio(step, "iii_prepared_device_decode"),
    }
    (output_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    if not bench.keep_data:  # several GB at larger settings; bench.imagenet.keep_data=true keeps them
        shutil.rmtree(output_dir / "data", ignore_errors=True)
    return result


def _kwargs(data: DictConfig) -> dict[str, Any]:
    settings = OmegaConf.to_container(data, resolve=True)
    settings.pop("_target_")
    return settings


def format_imagenet_table(result: dict[str, Any]) -> str:
    def number(value: float | str | None) -> str:
        return "-" if value is None else value if isinstance(value, str) else f"{value:,.0f}"

    def times(value: float | str | None) -> str:
        return "" if value is None or isinstance(value, str) else f"{value:.2f}x"

    loader, step, images = (
        result["loader_images_per_sec_per_worker"],
        result["train_step_images_per_sec"],
        result["images"],
    )
    decode = result["decode_only_images_per_sec_one_thread"]
    simple, torchvision = decode["ii_simplejpeg_prepared_patch"], decode["torchvision_decode_jpeg_prepared_patch"]
    peers = result["peers_images_per_sec_per_worker"]
    rows = [
        ("(i) data=imagenet: PIL decode of the full JPEG + resize", loader["i_imagefolder"], None,
         step["i_imagefolder"]),
        ("(ii) prepared JPEG patch, decode=cpu (simplejpeg)", loader["ii_prepared_cpu_decode"],
         result["loader_fraction_of_decode_ii"], step["ii_prepared_cpu_decode"]),
        ("(iii) prepared JPEG patch, decode=device", loader["iii_prepared_device_decode"], None,
         step["iii_prepared_device_decode"]),
        ("raw uint8 patch (no decoding)", loader["prepared_raw"], None, None),
        ("peer: webdataset tar shards + decode_jpeg", peers["webdataset"],
         result["peers_fraction_of_their_decode"]["webdataset"], None),
        ("peer: mosaicml-streaming MDS + decode_jpeg", peers["mosaicml_streaming"],
         result["peers_fraction_of_their_decode"]["mosaicml_streaming"], None),
    ]  # fmt: skip
    lines = [
        f"device: {result['device']} ({result['device_name']}), loader batch {result['batch_size']}, "
        f"{result['loader_workers']} loader worker(s); training steps: batch {result['train_step_batch_size']}, "
        f"{result['model_config']['input_size']} px, {result['precision']}",
        f"photos: {images['train']} at ImageNet's sizes, {images['source_mean_bytes'] / 1e3:.0f} KB each; prepared "
        f"patches: JPEG q{images['prepared_jpeg_quality']} {images['prepared_jpeg_mean_bytes'] / 1e3:.1f} KB, raw "
        f"{images['prepared_raw_mean_bytes'] / 1e3:.1f} KB; items per chunk {result['prepared_items_per_chunk']}",
        f"{'path':<58}{'loader img/s/worker':>20}{'x decode':>10}{'train img/s':>13}",
    ]
    for label, rate, fraction, trained in rows:
        lines.append(f"{label:<58}{number(rate):>20}{times(fraction):>10}{number(trained) if trained else '':>13}")
    lines.append(
        f"a worker that only hands over uint8 256x256 patches: "
        f"{result['loader_transfer_floor_images_per_sec_per_worker']:,.0f} images/s"
    )
    lines.append(
        f"decoding alone, one thread: full JPEG + resize {decode['i_pil_full_jpeg_resize_crop']:,.0f} images/s; "
        f"prepared patch: simplejpeg {simple:,.0f}, torchvision decode_jpeg {torchvision:,.0f} images/s"
    )
    lines.append(f"loader_fraction_of_decode_ii = {result['loader_fraction_of_decode_ii']:.3f}")
    return "\n".join(lines)
