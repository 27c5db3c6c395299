"""``alexnet-predict``: the five most likely classes, with names and probabilities, for each image given."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.command import hydra_command
from alexnet.config import Invocation
from alexnet.evaluation import predict


@hydra_command("predict")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    predict(cfg, invocation.typed_keys("data."))  # typed data.* keys replace a checkpoint's saved ones


if __name__ == "__main__":
    main()
