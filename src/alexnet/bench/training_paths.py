"""What ``alexnet-bench`` measures: training images/s of this project's Lightning step against a plain PyTorch
loop and the model step alone, for the same model and batch size, plus each data pipeline alone.

The paths are timed per step (median of ``bench.steps`` after ``bench.warmup``), so a stray slow step on a
shared machine does not decide a ratio.
"""

from __future__ import annotations

import itertools
import json
import logging
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader
from torchvision import transforms

from alexnet.data.fashion_mnist import FashionMNISTDataModule, write_random_fashion_mnist
from alexnet.errors import UserError
from alexnet.run.build import Run, build

log = logging.getLogger(__name__)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(Callback):
    """Records when each training step ends, so step times include loading, transfer and every hook."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        synchronize(trainer.strategy.root_device)
        self.ends.append(time.perf_counter())


def median_step(ends: list[float], warmup: int) -> float:
    """Median time between consecutive step ends, after the first ``warmup`` (>= 1) steps."""
    return statistics.median(b - a for a, b in itertools.pairwise(ends[warmup - 1 :]))


def apply_fast_paths(cfg: DictConfig, setting: str | None) -> None:
    """``auto``: bf16 autocast, channels_last and compile on a GPU, the plain fp32 net on a CPU."""
    if setting is None:
        return
    if setting != "auto":
        raise UserError(f"bench.fast_paths={setting!r}: use auto, or null to keep model.* and trainer.* as given.")
    gpu = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    with open_dict(cfg):
        cfg.trainer.precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
        cfg.model.channels_last = gpu
        cfg.model.compile = gpu


def timed_fit(cfg: DictConfig, warmup: int, steps: int, too_few: str) -> tuple[float, Run]:
    """The median step time of ``alexnet-train``'s own objects (``alexnet.run.build``) fitting ``cfg`` for
    ``warmup + steps`` steps, timed by a callback at every step end; ``too_few`` says which settings to change
    when the data runs out first."""
    with open_dict(cfg):
        cfg.trainer.max_steps = warmup + steps
    run = build(cfg)
    timer = next(c for c in run.trainer.callbacks if isinstance(c, StepTimer))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    if len(timer.ends) < warmup + steps:
        raise UserError(f"The training set gave only {len(timer.ends)} of the {warmup + steps} steps needed; {too_few}")
    return median_step(timer.ends, warmup), run


def lightning_path(cfg: DictConfig) -> tuple[float, L.Trainer, FashionMNISTDataModule]:
    """(a): ``alexnet-train``'s own step."""
    too_few = f"use fewer bench.warmup + bench.steps or a smaller data.batch_size={cfg.data.batch_size}."
    seconds, run = timed_fit(cfg, cfg.bench.warmup, cfg.bench.steps, too_few)
    return seconds, run.trainer, run.datamodule


def timed_steps(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> float:
    ends = []
    for _ in range(warmup + steps):
        step()
        synchronize(device)
        ends.append(time.perf_counter())
    return median_step(ends, warmup)


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, autocast: torch.autocast) -> Callable:
    def run(images: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()

    return run


def model_only_path(cfg: DictConfig, batch: tuple[torch.Tensor, torch.Tensor], precision: str) -> float:
    """(c): the same net, optimizer and precision as (a), stepping on one of (a)'s batches kept on the device.

    A real batch rather than random numbers: the paper's N(0, 0.01) init drives activations of random
    inputs towards denormal floats, which a CPU computes far more slowly.
    """
    images, labels = batch
    net = instantiate(cfg.model).to(images.device).train()
    step = train_step(net, instantiate(cfg.optimizer)(net.parameters()), autocast_for(images.device, precision))
    return timed_steps(lambda: step(images, labels), images.device, cfg.bench.warmup, cfg.bench.steps)


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))


def plain_loader(cfg: DictConfig, root: Path, device: torch.device) -> DataLoader:
    """d2l's Fashion-MNIST loader: torchvision's dataset hands out PIL images, resized one at a time."""
    steps: list[Any] = [transforms.Resize(cfg.model.input_size)]
    if cfg.model.in_channels == 3:
        steps.append(transforms.Grayscale(num_output_channels=3))
    channels = cfg.model.in_channels
    steps += [
        transforms.ToTensor(),
        transforms.Normalize(list(cfg.data.mean) * channels, list(cfg.data.std) * channels),
    ]
    dataset = torchvision.datasets.FashionMNIST(str(root), train=True, transform=transforms.Compose(steps))
    workers = cfg.bench.workers
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        drop_last=True,
    )


def plain_path(cfg: DictConfig, loader: DataLoader, device: torch.device) -> float:
    """(b): fp32, no channels_last, no compile, batches copied from the loader's host memory every step."""
    with open_dict(cfg):
        plain_model = OmegaConf.merge(cfg.model, {"channels_last": False, "compile": False})
    net = instantiate(plain_model).to(device).train()
    step = train_step(net, instantiate(cfg.optimizer)(net.parameters()), autocast_for(device, "32-true"))
    batches = iter(loader)

    def next_step() -> None:
        images, labels = next(batches)
        step(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))

    return timed_steps(next_step, device, cfg.bench.warmup, cfg.bench.steps)


def data_rate(batches: Iterable, prepare: Callable, device: torch.device, count: int) -> float:
    """Images/s a pipeline delivers to the device as model input, after one untimed batch."""
    iterator = iter(batches)
    prepare(next(iterator))
    synchronize(device)
    start, images = time.perf_counter(), 0
    for _ in range(count):
        inputs = prepare(next(iterator))
        images += len(inputs)
    synchronize(device)
    return images / (time.perf_counter() - start)


class UtilisationSampler:
    """Mean GPU utilisation (%, from NVML through ``torch.cuda.utilization``) while a path runs; None on a CPU
    or without the NVML bindings."""

    def __init__(self, device: torch.device, interval: float = 0.05) -> None:
        self.device, self.interval, self.samples = device, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml / NVML: utilisation is simply not reported
                return

    def __enter__(self) -> UtilisationSampler:
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


# The three training paths, in the order they run ((a) first: (b) and (c) reuse its data); each is timed while
# GPU utilisation is sampled.
PATHS = {
    "a_lightning": "(a) alexnet-train step (Lightning, on-device data)",
    "c_model_only": "(c) model step alone, batch on the device",
    "b_plain_pytorch": "(b) plain PyTorch, PIL resize per sample, fp32",
}


def benchmark(cfg: DictConfig) -> dict[str, Any]:
    """Run the three paths and both data pipelines; returns what ``bench.json`` holds."""
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    apply_fast_paths(cfg, cfg.bench.fast_paths)
    batch, warmup, steps = cfg.data.batch_size, cfg.bench.warmup, cfg.bench.steps
    if cfg.bench.synthetic:
        # Enough images for the timed steps and the data-only batches, in one epoch.
        needed = batch * (max(warmup + steps, cfg.bench.data_batches) + 2) + cfg.data.val_size
        with open_dict(cfg):
            cfg.data.root = str(write_random_fashion_mnist(output_dir / "data", needed, batch))
    if cfg.data._target_ != "alexnet.data.fashion_mnist.FashionMNISTDataModule":
        raise UserError("alexnet-bench compares Fashion-MNIST pipelines: keep data=fashion_mnist.")

    L.seed_everything(cfg.seed, workers=True)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    made: dict[str, Any] = {}  # what (a) builds, for the paths after it

    def a_lightning() -> float:
        seconds, made["trainer"], made["datamodule"] = lightning_path(cfg)
        return seconds

    def on_device_batch(batch_: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        moved = (batch_[0].to(device, non_blocking=True), batch_[1].to(device, non_blocking=True))
        return made["datamodule"].on_after_batch_transfer(moved, 0)

    def c_model_only() -> float:
        first = on_device_batch(next(iter(made["datamodule"].train_dataloader())))
        return model_only_path(cfg, first, str(made["trainer"].precision))

    def b_plain_pytorch() -> float:
        made["loader"] = plain_loader(cfg, Path(cfg.data.root), device)
        return plain_path(cfg, made["loader"], device)

    measures = {"a_lightning": a_lightning, "c_model_only": c_model_only, "b_plain_pytorch": b_plain_pytorch}
    seconds, busy = {}, {}
    for key in PATHS:
        with UtilisationSampler(device) as sampler:
            seconds[key] = measures[key]()
        busy[key] = sampler.mean
        device = made["trainer"].strategy.root_device
        log.info("%s: %.1f ms", PATHS[key], seconds[key] * 1e3)

    count = cfg.bench.data_batches
    a_data = data_rate(made["datamodule"].train_dataloader(), lambda b: on_device_batch(b)[0], device, count)
    b_data = data_rate(made["loader"], lambda b: b[0].to(device, non_blocking=True), device, count)

    rates = {key: batch / s for key, s in seconds.items()}
    result = {
        "device": str(device),
        "device_name": gpu_name(device),
        "torch": torch.__version__,
        "model_config": OmegaConf.to_container(cfg.model, resolve=True),
        "batch_size": batch,
        "precision_a_c": str(made["trainer"].precision),
        "channels_last_a_c": bool(cfg.model.channels_last),
        "compile_a_c": bool(cfg.model.compile),
        "on_device_data_a": bool(cfg.data.on_device),
        "plain_loader_workers_b": cfg.bench.workers,
        "steps": steps,
        "warmup": warmup,
        "images_per_sec": rates,
        "step_ms": {key: s * 1e3 for key, s in seconds.items()},
        "gpu_utilisation_percent": busy,
        "ratio_a_over_b": rates["a_lightning"] / rates["b_plain_pytorch"],
        "ratio_a_over_c": rates["a_lightning"] / rates["c_model_only"],
        "data_images_per_sec": {"a_on_device_batch_resize": a_data, "b_pil_per_sample": b_data},
        "data_ratio_a_over_b": a_data / b_data,
    }
    (output_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict[str, Any]) -> str:
    rates, ms = result["images_per_sec"], result["step_ms"]
    fast = f"{result['precision_a_c']}, channels_last={result['channels_last_a_c']}, compile={result['compile_a_c']}"
    data, busy = result["data_images_per_sec"], result["gpu_utilisation_percent"]

    def utilisation(key: str) -> str:
        return "-" if busy[key] is None else f"{busy[key]:.0f} %"

    lines = [
        f"device: {result['device']} ({result['device_name']}), batch {result['batch_size']}, "
        f"{result['model_config']['input_size']} px; (a) and (c): {fast}",
        f"{'path':<54}{'images/s':>12}{'step ms':>12}{'GPU busy':>10}",
        *(f"{PATHS[key]:<54}{rates[key]:>12.1f}{ms[key]:>12.1f}{utilisation(key):>10}" for key in sorted(PATHS)),
        f"a/b = {result['ratio_a_over_b']:.3f}   a/c = {result['ratio_a_over_c']:.3f} "
        f"(Lightning and data overhead {100 * (1 - result['ratio_a_over_c']):.1f} %)",
        f"data alone: on-device uint8 + batch resize {data['a_on_device_batch_resize']:.0f} images/s, "
        f"PIL per sample ({result['plain_loader_workers_b']} workers) {data['b_pil_per_sample']:.0f} images/s "
        f"(ratio {result['data_ratio_a_over_b']:.1f})",
    ]
    return "\n".join(lines)
