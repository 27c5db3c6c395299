"""``alexnet-eval``: top-1/top-5 error of one checkpoint, an ensemble of several, or a weights file."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.command import hydra_command
from alexnet.config import Invocation
from alexnet.evaluation import evaluate


@hydra_command("eval")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    evaluate(cfg, invocation.typed_keys("data."))  # typed data.* keys replace a checkpoint's saved ones


if __name__ == "__main__":
    main()
