"""``alexnet-train``: fit AlexNet, then test it."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.command import hydra_command
from alexnet.config import Invocation
from alexnet.run import train


@hydra_command("train")
def main(cfg: DictConfig, invocation: Invocation) -> float | None:
    return train(cfg, invocation)


if __name__ == "__main__":
    main()
