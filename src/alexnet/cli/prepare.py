"""``alexnet-prepare``: write ImageNet's 256x256 patches once, as litdata chunks, for ``data=imagenet_prepared``."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation
from alexnet.data.imagenet.prepared_writer import PatchSettings, prepare


@hydra_command("prepare")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    settings = PatchSettings(format=cfg.format, jpeg_quality=cfg.jpeg_quality, resize_size=cfg.resize_size)
    prepare(cfg.source, cfg.output, settings, list(cfg.splits), cfg.num_workers, cfg.chunk_bytes, cfg.overwrite)


if __name__ == "__main__":
    main()
