"""What every checkpoint of a run carries beyond Lightning's own state, and what a resumed one needs put right.

- The RNG states (torch, CUDA, NumPy, Python) the dropout masks and the on-device crops draw from: restoring them
  makes a resumed run exact.
- The states of the module's torchmetrics objects (the epoch's running mean loss, its top-1/top-5 counts):
  Lightning keeps no state of an epoch's aggregates in its checkpoints, so without them a run resumed mid-epoch
  would log that epoch's training loss and accuracy over the batches after the resume only. They are put back
  when training continues inside the epoch they were saved in (Lightning calls no ``on_train_epoch_start`` for an
  epoch it resumes in the middle); a checkpoint from an epoch's end leaves the next epoch fresh.
- The data's held-out validation split (``data=image_folder`` without ``val/``) lives in the data module's state,
  which Lightning saves; at the start of every fit (after a resume's restore) it is also written to
  ``<run>/data_split.json`` for people and other tools (``folder.write_data_split``).
- The callbacks' saved paths (best and last checkpoint) re-rooted when the run folder was copied or moved since
  the checkpoint was saved (``folder.reroot_checkpoint``).

A callback that ``build`` adds to every training run, whatever ``callbacks=`` says: no option can drop it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics import Metric

from alexnet.run.folder import reroot_checkpoint, write_data_split


def _numpy_state_as_tensors(state: tuple) -> tuple:
    # Checkpoints are loaded with weights_only=True, which refuses numpy arrays but accepts tensors.
    name, keys, *rest = state
    return (name, torch.from_numpy(keys.copy()), *rest)


class CheckpointState(Callback):
    """Saves the RNG states in every checkpoint and restores them (and re-roots the callbacks' paths) on resume.

    Args:
        run_config: the run's resolved config, as saved (its ``paths.output_dir`` and ``resume``).
    """

    def __init__(self, run_config: dict[str, Any] | None = None) -> None:
        self.run_config = run_config
        self._metric_states: dict[str, Any] | None = None  # restored, waiting for training to continue

    @staticmethod
    def _metrics(pl_module: L.LightningModule) -> dict[str, Metric]:
        return {name: m for name, m in pl_module.named_modules() if isinstance(m, Metric)}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": _numpy_state_as_tensors(np.random.get_state()),
            "python": random.getstate(),
        }
        # Where in the epoch: a run resumed mid-epoch must keep the batch size and devices that ordered its samples.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        checkpoint["position"] = {
            "epoch": trainer.current_epoch,
            "batches": done,
            "mid_epoch": 0 < done < trainer.num_training_batches,
        }
        checkpoint["metric_states"] = {
            "epoch": trainer.current_epoch,
            "metrics": {
                name: {"state": dict(metric.metric_state), "updates": metric.update_count}
                for name, metric in self._metrics(pl_module).items()
            },
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Lightning calls every callback's on_load_checkpoint before any callback loads its state.
        reroot_checkpoint(checkpoint, self.run_config)
        self._metric_states = checkpoint.get("metric_states")
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        name, keys, *rest = states["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        random.setstate(states["python"])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning restored the data module's state: a resumed run records the split it trains on.
        record = getattr(trainer.datamodule, "split_record", lambda: None)()
        output_dir = (self.run_config or {}).get("paths", {}).get("output_dir")
        if record is not None and output_dir and trainer.is_global_zero:
            write_data_split(Path(output_dir), record)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        saved, self._metric_states = self._metric_states, None
        if saved is None or saved["epoch"] != trainer.current_epoch:
            return
        metrics = self._metrics(pl_module)
        for name, restored in saved["metrics"].items():
            if name in metrics:
                for key, value in restored["state"].items():
                    setattr(
                        metrics[name], key, value.to(pl_module.device) if isinstance(value, torch.Tensor) else value
                    )
                # torchmetrics has no public way to restore how many updates a state holds (it weighs "mean" states
                # by it when syncing), so the count is set where torchmetrics keeps it.
                metrics[name]._update_count = restored["updates"]
