"""``alexnet-train``: fit AlexNet, then test it."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation
from alexnet.run.training import train


@hydra_command("train")
def main(cfg: DictConfig, invocation: Invocation) -> float | None:
    return train(cfg, invocation)


if __name__ == "__main__":
    main()
