"""``alexnet-eval``: top-1/top-5 error of one checkpoint, an ensemble of several, or a weights file.

Runs on one device with the loaders' sequential sampler, so every validation image counts exactly once
(DistributedSampler would pad with repeats).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet.checkpoints import net_from_checkpoint, read_checkpoint, run_config
from alexnet.config import CONFIG_DIR, typed_overrides
from alexnet.errors import UserError, exit_on_user_error
from alexnet.lit_alexnet import LitAlexNet
from alexnet.model import Ensemble

log = logging.getLogger(__name__)


def checkpoint_paths(cfg: DictConfig) -> list[str]:
    paths = cfg.get("ckpt_path")
    if paths is None:
        return []
    return [str(p) for p in paths] if isinstance(paths, ListConfig | list) else [str(paths)]


def build_net_and_data(cfg: DictConfig) -> tuple[torch.nn.Module, L.LightningDataModule, int]:
    """The net (one, or an averaging ensemble) and the data module it is scored on."""
    paths = checkpoint_paths(cfg)
    if not paths:
        model_cfg, data_cfg = cfg.model, cfg.data
        nets = [instantiate(model_cfg).eval()]
    else:
        checkpoints = [read_checkpoint(p) for p in paths]
        nets = [net_from_checkpoint(c) for c in checkpoints]
        saved = run_config(checkpoints[0])
        model_cfg, data_cfg = saved.model, saved.data
        for key in (k.lstrip("+~") for k in typed_overrides("data.")):
            name = key.removeprefix("data.")
            if name.split(".")[0] not in data_cfg:
                settings = ", ".join(k for k in data_cfg if not k.startswith("_"))
                raise UserError(
                    f"{key}: the checkpoint's data module ({data_cfg._target_.rsplit('.', 1)[-1]}) has no such "
                    f"setting. Its settings: {settings}."
                )
            OmegaConf.update(data_cfg, name, OmegaConf.select(cfg, key), force_add=True)
    data_cfg.input_size, data_cfg.channels = model_cfg.input_size, model_cfg.in_channels
    net = nets[0] if len(nets) == 1 else Ensemble(nets)
    return net, instantiate(data_cfg), len(nets)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    net, datamodule, n_nets = build_net_and_data(cfg)
    module = LitAlexNet(net=net, optimizer=torch.optim.SGD)
    trainer: L.Trainer = instantiate(cfg.trainer)
    if trainer.world_size != 1:
        raise UserError("alexnet-eval runs on one device (trainer.devices=1) so that no image is counted twice.")
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    crops = getattr(datamodule, "test_crops", 1)
    result = {
        "top1_error": 1.0 - metrics["test/acc_top1"],
        "top5_error": 1.0 - metrics["test/acc_top5"],
        "loss": metrics["test/loss"],
        "crops": crops,
        "networks": n_nets,
        "checkpoints": checkpoint_paths(cfg),
    }
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "eval.json").write_text(json.dumps(result, indent=2))
    print(
        f"top-1 error: {100 * result['top1_error']:.2f} %   top-5 error: {100 * result['top5_error']:.2f} %   "
        f"({crops} crop{'s' if crops > 1 else ''}, {n_nets} network{'s' if n_nets > 1 else ''}; "
        f"{output_dir / 'eval.json'})"
    )
    return result


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
