"""``alexnet-eval``: top-1/top-5 error of one checkpoint, an ensemble of several, or a weights file."""

from __future__ import annotations

from omegaconf import DictConfig

from alexnet.analysis.scoring import evaluate
from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation


@hydra_command("eval")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    evaluate(cfg, invocation.typed_keys("data"))  # data.* typed replace a checkpoint's; data= must be its own


if __name__ == "__main__":
    main()
