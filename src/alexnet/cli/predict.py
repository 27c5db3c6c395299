"""``alexnet-predict``: the five most likely classes, with names and probabilities, for each image given."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.analysis.scoring import predict
from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation


@hydra_command("predict")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    predict(cfg, invocation.typed_keys("data"))  # data.* typed replace a checkpoint's; data= must be its own


if __name__ == "__main__":
    main()
