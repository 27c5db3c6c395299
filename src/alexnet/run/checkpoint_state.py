"""What every checkpoint of a run carries beyond Lightning's own state, and what a resumed one needs put right.

- The RNG states (torch, CUDA, NumPy, Python) the dropout masks and the on-device crops draw from: restoring them
  makes a resumed run exact.
- The callbacks' saved paths (best and last checkpoint) re-rooted when the run folder was copied or moved since
  the checkpoint was saved (``folder.reroot_checkpoint``).

A callback that ``build`` adds to every training run, whatever ``callbacks=`` says: no option can drop it.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from alexnet.run.folder import reroot_checkpoint


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

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": _numpy_state_as_tensors(np.random.get_state()),
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Lightning calls every callback's on_load_checkpoint before any callback loads its state.
        reroot_checkpoint(checkpoint, self.run_config)
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        name, keys, *rest = states["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        random.setstate(states["python"])
