"""Scoring trained nets: top-1/top-5 error on a validation set (``alexnet-eval``) and the top classes of single
images (``alexnet-predict``).

Evaluation runs on one device with the loaders' sequential sampler, so every validation image counts exactly
once (DistributedSampler would pad with repeats).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from alexnet.analysis.scored_net import build_net_and_data, checkpoint_paths, exported_net_and_data
from alexnet.data.image_files import IMAGE_EXTENSIONS
from alexnet.errors import UserError
from alexnet.models.checkpoint_files import check_classes
from alexnet.models.lit_alexnet import LitAlexNet, crop_averaged_log_probs


def evaluate(cfg: DictConfig, data_keys: list[str] = ()) -> dict[str, float]:
    """Test the net(s) of ``cfg`` on their data; prints the errors and writes ``eval.json`` in the run folder.
    ``data_keys``: the ``data.*`` overrides typed, which replace a checkpoint's saved data settings."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    scored = build_net_and_data(cfg, list(data_keys))
    datamodule, n_nets = scored.datamodule, scored.networks
    module = LitAlexNet(net=scored.net, optimizer=torch.optim.SGD)
    trainer: L.Trainer = instantiate(cfg.trainer)
    if trainer.world_size != 1:
        raise UserError("alexnet-eval runs on one device (trainer.devices=1) so that no image is counted twice.")
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    crops = datamodule.test_crops
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


def image_files(entries: list[str]) -> list[Path]:
    """Files as given, and the images inside any folder given (sorted)."""
    files: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"images: {path} is neither a file nor a folder.")
    if not files:
        raise UserError("images: no image files found; give files or folders, e.g. images=[cat.jpg,photos/].")
    return files


@torch.no_grad()
def predict(cfg: DictConfig, data_keys: list[str] = ()) -> list[tuple[Path, list[tuple[str, float]]]]:
    """The ``cfg.top_k`` most likely classes, with names and probabilities, of each image of ``cfg.images``;
    prints them."""
    entries = cfg.get("images")
    if not entries:
        raise UserError("Give the images to classify: alexnet-predict ckpt_path=... images=[img1.jpg,dir/]")
    entries = [str(e) for e in entries] if isinstance(entries, ListConfig | list) else [str(entries)]
    # The classes come from the checkpoint; the data's are compared with them only where the user pointed at data.
    compare_classes = "data.root" in [k.lstrip("+~") for k in data_keys]
    if cfg.get("model_path") is not None:  # an exported model, with the data pipeline its description records
        if checkpoint_paths(cfg):
            raise UserError("Give ckpt_path= or model_path= (an exported model), not both.")
        scored = exported_net_and_data(cfg, list(data_keys))
        if compare_classes:
            check_classes(scored.class_names, scored.datamodule.class_names(), f"data.root={cfg.data.root}")
    else:
        scored = build_net_and_data(cfg, list(data_keys), compare_classes=compare_classes)
    net, datamodule, names = scored.net, scored.datamodule, scored.class_names
    k = min(cfg.top_k, len(names))
    results = []
    for path in image_files(entries):
        x = datamodule.model_input(datamodule.read_image(str(path))[None], "test")
        probs = crop_averaged_log_probs(net, x if x.dim() == 5 else x[:, None])[0].exp()
        top = probs.topk(k)
        results.append((path, [(names[i], float(p)) for p, i in zip(top.values, top.indices, strict=True)]))
    for path, top in results:
        print(path)
        for name, prob in top:
            print(f"  {prob:7.2%}  {name}")
    return results
