"""``alexnet-predict``: the five most likely classes, with names and probabilities, for each image given."""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig

from alexnet.config import CONFIG_DIR
from alexnet.data.imagenet import IMAGE_EXTENSIONS
from alexnet.errors import UserError, exit_on_user_error
from alexnet.evaluate import build_net_and_data
from alexnet.lit_alexnet import crop_averaged_log_probs


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
def predict(cfg: DictConfig) -> list[tuple[Path, list[tuple[str, float]]]]:
    entries = cfg.get("images")
    if not entries:
        raise UserError("Give the images to classify: alexnet-predict ckpt_path=... images=[img1.jpg,dir/]")
    entries = [str(e) for e in entries] if isinstance(entries, ListConfig | list) else [str(entries)]
    net, datamodule, _ = build_net_and_data(cfg)
    names = datamodule.class_names()
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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
