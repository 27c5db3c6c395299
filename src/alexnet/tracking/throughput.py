"""Training throughput (images/s) and model FLOPs utilisation, on the progress bar and in every logger."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput, get_available_flops
from lightning.pytorch.callbacks import Callback

# Lightning's ThroughputMonitor computes the same figures with the same `Throughput` class, but hands them
# straight to the loggers: they never reach the console. This callback logs them with `pl_module.log`, so the
# progress bar shows them too, and takes the FLOPs from the net's own exact count.


class ThroughputLogger(Callback):
    """Logs ``train/images_per_sec`` (all ranks together) and, where the device's peak is known, ``train/mfu``.

    Args:
        window: training steps the rates are averaged over.
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.throughput: Throughput | None = None
        self.flops_per_image: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dtype = torch.bfloat16 if "bf16" in str(trainer.precision) else torch.float32
        if "16" in str(trainer.precision) and "bf16" not in str(trainer.precision):
            dtype = torch.float16
        peak = get_available_flops(trainer.strategy.root_device, dtype)
        self.throughput = Throughput(available_flops=peak, world_size=trainer.world_size, window_size=self.window)
        forward_flops = getattr(getattr(pl_module, "net", None), "forward_flops", None)
        # A training step costs about three forward passes (the backward pass is two).
        self.flops_per_image = 3 * forward_flops() if callable(forward_flops) else None
        self._start, self._images, self._steps = time.perf_counter(), 0, 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        assert self.throughput is not None
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # time the work, not its queueing
        images = len(batch[0])
        self._images += images
        self._steps += 1
        self.throughput.update(
            time=time.perf_counter() - self._start,
            batches=self._steps,
            samples=self._images,
            flops=None if self.flops_per_image is None else self.flops_per_image * images,
        )
        rates = self.throughput.compute()
        if "device/samples_per_sec" in rates:  # present once the window is full
            total = rates["device/samples_per_sec"] * trainer.world_size
            pl_module.log("train/images_per_sec", total, on_step=True, prog_bar=True, rank_zero_only=True)
        if "device/mfu" in rates:
            pl_module.log("train/mfu", rates["device/mfu"], on_step=True, prog_bar=True, rank_zero_only=True)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._paused_at = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation time is not training time: move the clock's origin past it.
        if self.throughput is not None and not trainer.sanity_checking:
            self._start += time.perf_counter() - self._paused_at
