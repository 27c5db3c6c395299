"""``alexnet-summary``: each layer's output shape, the parameter count and the neuron count of a model config."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet.cli.command import hydra_command
from alexnet.config.invocation import Invocation
from alexnet.models.layer_summary import format_summary


@hydra_command("summary")
def main(cfg: DictConfig, invocation: Invocation) -> None:
    print(format_summary(instantiate(cfg.model)))


if __name__ == "__main__":
    main()
