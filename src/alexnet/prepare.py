"""``alexnet-prepare``: write ImageNet's 256x256 patches once, as litdata chunks, for ``data=imagenet_prepared``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from alexnet.config import CONFIG_DIR
from alexnet.data.imagenet_prepare import PatchSettings, prepare
from alexnet.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="prepare")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    settings = PatchSettings(format=cfg.format, jpeg_quality=cfg.jpeg_quality, resize_size=cfg.resize_size)
    prepare(
        source=cfg.source,
        output=cfg.output,
        settings=settings,
        splits=list(cfg.splits),
        num_workers=cfg.num_workers,
        chunk_bytes=cfg.chunk_bytes,
        overwrite=cfg.overwrite,
    )


if __name__ == "__main__":
    main()
